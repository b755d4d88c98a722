'use strict'
// What flying-squid lacks for peam's world, added on the server (issue 17):
// - crafting: `serv.peamCraft(player, name)` performs a minecraft-data recipe on the player's
//   inventory; a recipe larger than 2x2 needs a crafting table within reach;
// - harvesting: a block that needs a tool (stone, ores) drops nothing without one, and drops
//   go straight to the digger (flying-squid throws them about with no item physics);
// - a fixed spawn, so that a seed gives the same start.
const { Vec3 } = require('vec3')
const { chooseRecipe, transform } = require('./crafting')
const WORLD = require('./world.json')

const REACH = 4 // blocks: how far a crafting table may be, as a player reaches one

module.exports = function install (serv) {
  const registry = serv.registry
  const Item = require('prismarine-item')(registry)
  const [sx, sy, sz] = WORLD.spawn
  serv.getSpawnPoint = async () => new Vec3(sx + 0.5, sy, sz + 0.5)

  serv.on('newPlayer', player => {
    player.on('dug_cancel', ({ block, drops }) => {
      const held = player.inventory.slots[36 + player.heldItemSlot]
      const tools = block.harvestTools
      if (tools && !(held && tools[held.type])) {
        drops.length = 0
        return
      }
      for (const drop of drops) {
        drop.blockDropPosition = player.position.offset(0, 0.5, 0)
        drop.blockDropVelocity = new Vec3(0, 0, 0)
        drop.blockDropPickup = 1 // ms; 0 would mean never
      }
    })
  })

  async function tableNear (player) {
    const id = registry.blocksByName.crafting_table.id
    const p = player.position.floored()
    for (let dx = -REACH; dx <= REACH; dx++) {
      for (let dy = -2; dy <= 3; dy++) {
        for (let dz = -REACH; dz <= REACH; dz++) {
          if ((await player.world.getBlockType(p.offset(dx, dy, dz))) === id) return true
        }
      }
    }
    return false
  }

  serv.peamCraft = async (player, name) => {
    const item = registry.itemsByName[name]
    if (!item) return { ok: false, error: `unknown item ${name}` }
    const slots = player.inventory.slots
    const needTable = (registry.recipes[item.id] || []).some(r => r.inShape && (r.inShape.length > 2 || r.inShape.some(row => row.length > 2)))
    const near = needTable ? await tableNear(player) : false
    const choice = chooseRecipe(registry.recipes[item.id], slots, near)
    if (choice.error) return { ok: false, error: choice.error }
    const { result } = choice.recipe
    const changes = transform(slots, choice.needs, result.id, result.count, item.stackSize)
    if (!changes) return { ok: false, error: 'inventory full' }
    for (const [slot, it] of changes) player.inventory.updateSlot(slot, it ? new Item(it.type, it.count) : null)
    return { ok: true }
  }
}
