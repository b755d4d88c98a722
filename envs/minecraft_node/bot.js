'use strict'
// One Node process for one peam episode: a flying-squid server on a free loopback port
// (offline mode) and a mineflayer bot on it, driven by JSON lines on stdin/stdout:
//   -> {"op": "act", "action": "move_left"}      <- {"ok": true, "obs": {...}}
// The process ends when its parent does (stdin closes, or the parent id changes).
const path = require('path')
const readline = require('readline')

// stdout carries the protocol alone: any library's logging goes to stderr.
const out = process.stdout.write.bind(process.stdout)
const send = msg => out(JSON.stringify(msg) + '\n')
process.stdout.write = (chunk, ...rest) => process.stderr.write(chunk, ...rest)
console.log = console.info = console.warn = console.debug = (...a) => process.stderr.write(a.join(' ') + '\n')

// flying-squid reads commands from process.stdin when loaded: give it a stream of its own.
const input = process.stdin
Object.defineProperty(process, 'stdin', { value: new (require('stream').PassThrough)(), configurable: true })
const mcServer = require('flying-squid')
const mineflayer = require('mineflayer')
const { pathfinder, Movements, goals } = require('mineflayer-pathfinder')
const { Vec3 } = require('vec3')
const installPlugin = require('./server_plugin')
const WORLD = require('./world.json')

const SEED = Number(process.argv[2] || 0)
const R = WORLD.view_radius
const DIRS = { move_left: [-1, 0], move_right: [1, 0], move_up: [0, -1], move_down: [0, 1] }
const TIMEOUT = { move: 3000, dig: 8000, place: 3000, craft: 2000, pickup: 1500 }

function watchParent () {
  const parent = process.ppid
  input.on('end', () => process.exit(0))
  setInterval(() => { if (process.ppid !== parent) process.exit(0) }, 500).unref()
}

function withTimeout (promise, ms, onTimeout) {
  let timer
  const late = new Promise(resolve => { timer = setTimeout(() => { onTimeout?.(); resolve('timeout') }, ms) })
  return Promise.race([promise.then(() => 'ok', err => `error: ${err.message}`), late]).finally(() => clearTimeout(timer))
}

async function startServer () {
  const serv = mcServer.createMCServer({
    port: 0,
    host: '127.0.0.1',
    'online-mode': false,
    motd: 'peam',
    'max-players': 2,
    logging: false,
    noConsoleOutput: true,
    gameMode: 0,
    difficulty: 0,
    generation: { name: path.join(__dirname, 'generator.js'), options: { worldSeed: SEED, seed: SEED + 1 } },
    kickTimeout: 3600 * 1000,
    plugins: {},
    modpe: false,
    'view-distance': 3,
    'player-list-text': { header: '', footer: '' },
    'everybody-op': false,
    'max-entities': 100,
    version: WORLD.version
  })
  const port = await new Promise((resolve, reject) => {
    serv.once('listening', resolve)
    serv.once('error', reject)
  })
  await serv.waitForReady(10000)
  installPlugin(serv)
  return { serv, port }
}

async function startBot (port) {
  const bot = mineflayer.createBot({
    host: '127.0.0.1', port, username: 'peam', version: WORLD.version, auth: 'offline', hideErrors: true
  })
  bot.loadPlugin(pathfinder)
  await new Promise((resolve, reject) => {
    bot.once('spawn', resolve)
    bot.once('error', reject)
    bot.once('kicked', reason => reject(new Error(`kicked: ${reason}`)))
  })
  await bot.waitForChunksToLoad()
  const moves = new Movements(bot)
  Object.assign(moves, { canDig: false, allowParkour: false, allowSprinting: false, allow1by1towers: false })
  moves.scafoldingBlocks = []
  bot.pathfinder.setMovements(moves)
  return bot
}

// -- what the bot sees ------------------------------------------------------------------------

function makeEyes (bot) {
  const at = (x, y, z) => bot.blockAt(new Vec3(x, y, z))
  const solid = b => b && b.boundingBox === 'block'
  const exposed = (x, y, z) => [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]
    .some(([dx, dy, dz]) => !solid(at(x + dx, y + dy, z + dz)))

  // What one column shows at the bot's level: the first exposed block in the way (feet, head,
  // then the top of a taller pile), else the floor: ground to stand on, water, or a drop.
  function column (x, y, z) {
    const feet = at(x, y, z)
    if (!feet) return { name: 'unknown' }
    const blocked = solid(feet) || solid(at(x, y + 1, z))
    for (let dy = 0; dy <= (blocked ? 3 : 1); dy++) {
      const b = at(x, y + dy, z)
      if (dy >= 2 && !solid(b)) break
      if (solid(b) && exposed(x, y + dy, z)) return { name: b.name, block: b, dy }
    }
    if (blocked) return { name: 'unknown' }
    if (feet.name === 'water' || feet.name === 'lava') return { name: feet.name }
    const floor = at(x, y - 1, z)
    if (solid(floor)) return { name: 'ground' }
    return { name: floor && (floor.name === 'water' || floor.name === 'lava') ? floor.name : 'air' }
  }
  return { at, solid, column }
}

function observe (bot, eyes, state) {
  const p = bot.entity.position
  const fx = Math.floor(p.x); const fy = Math.floor(p.y + 0.01); const fz = Math.floor(p.z)
  const view = []
  for (let dx = -R; dx <= R; dx++) {
    const row = []
    for (let dz = -R; dz <= R; dz++) row.push(eyes.column(fx + dx, fy, fz + dz).name)
    view.push(row)
  }
  const inventory = {}
  for (const item of bot.inventory.items()) inventory[item.name] = (inventory[item.name] || 0) + item.count
  const [sx, sy, sz] = state.spawn
  return { view, inventory, position: [fx - sx, fy - sy, fz - sz], facing: state.facing, health: bot.health, food: bot.food }
}

// -- what the bot does --------------------------------------------------------------------------

function makeHands (bot, serv, eyes, state) {
  const feet = () => { const p = bot.entity.position; return [Math.floor(p.x), Math.floor(p.y + 0.01), Math.floor(p.z)] }
  const ahead = () => { const [x, y, z] = feet(); return [x + state.facing[0], y, z + state.facing[1]] }
  const player = () => serv.players.find(pl => pl.username === bot.username)
  const count = name => bot.inventory.items().filter(i => i.name === name).reduce((n, i) => n + i.count, 0)
  const waitFor = (test, ms) => new Promise(resolve => {
    const t0 = Date.now()
    const poll = () => (test() || Date.now() - t0 > ms) ? resolve(test()) : setTimeout(poll, 25)
    poll()
  })

  async function move (d) {
    state.facing = d
    const [x, y, z] = feet()
    const [tx, tz] = [x + d[0], z + d[1]]
    await bot.lookAt(new Vec3(tx + 0.5, y + 1.6, tz + 0.5), true)
    if (eyes.column(tx, y, tz).name !== 'ground') return { ok: true, turned: true } // a turn, as in Crafter
    const r = await withTimeout(bot.pathfinder.goto(new goals.GoalBlock(tx, y, tz)), TIMEOUT.move, () => bot.pathfinder.stop())
    bot.clearControlStates()
    return { ok: r === 'ok', error: r === 'ok' ? undefined : r }
  }

  async function dig () {
    const [x, y, z] = ahead()
    const seen = eyes.column(x, y, z)
    if (!seen.block) return { ok: false, error: `nothing to dig (${seen.name})` }
    const block = seen.block
    const tool = bot.pathfinder.bestHarvestTool(block)
    if (tool) await bot.equip(tool, 'hand')
    else if (bot.heldItem) await bot.unequip('hand')
    const before = bot.inventory.items().reduce((n, i) => n + i.count, 0)
    const r = await withTimeout(bot.dig(block, true), TIMEOUT.dig, () => bot.stopDigging())
    if (r !== 'ok') return { ok: false, error: r }
    const harvests = !block.harvestTools || (bot.heldItem && block.harvestTools[bot.heldItem.type])
    if (harvests) await waitFor(() => bot.inventory.items().reduce((n, i) => n + i.count, 0) > before, TIMEOUT.pickup)
    return { ok: true, dug: block.name }
  }

  async function place (name) {
    const [x, y, z] = ahead()
    if (eyes.column(x, y, z).name !== 'ground') return { ok: false, error: 'no room ahead' }
    const item = bot.inventory.items().find(i => i.name === name)
    if (!item) return { ok: false, error: `no ${name} held` }
    await bot.equip(item, 'hand')
    const floor = bot.blockAt(new Vec3(x, y - 1, z))
    const r = await withTimeout(bot.placeBlock(floor, new Vec3(0, 1, 0)), TIMEOUT.place)
    const placed = bot.blockAt(new Vec3(x, y, z))
    return { ok: placed && placed.name === name, error: r === 'ok' ? undefined : r }
  }

  async function craft (name) {
    const before = count(name)
    const res = await serv.peamCraft(player(), name)
    if (!res.ok) return res
    await waitFor(() => count(name) > before, TIMEOUT.craft)
    return { ok: count(name) > before }
  }

  return async function act (action) {
    if (DIRS[action]) return move(DIRS[action])
    if (action === 'do') return dig()
    if (action === 'noop') return { ok: true }
    if (action.startsWith('place_')) return place(action.slice(6))
    if (action.startsWith('craft_')) return craft(action.slice(6))
    return { ok: false, error: `unknown action ${action}` }
  }
}

async function main () {
  watchParent()
  const t0 = Date.now()
  const { serv, port } = await startServer()
  const bot = await startBot(port)
  const p = bot.entity.position
  const state = { spawn: [Math.floor(p.x), Math.floor(p.y + 0.01), Math.floor(p.z)], facing: [0, 1] }
  const eyes = makeEyes(bot)
  const act = makeHands(bot, serv, eyes, state)
  bot.on('end', () => { process.stderr.write('bot disconnected\n'); process.exit(3) })
  send({ ready: true, port, start_s: (Date.now() - t0) / 1000, obs: observe(bot, eyes, state) })

  const lines = readline.createInterface({ input })
  let queue = Promise.resolve()
  lines.on('line', line => {
    queue = queue.then(async () => {
      const msg = JSON.parse(line)
      if (msg.op === 'act') {
        const res = await act(msg.action)
        send({ ...res, obs: observe(bot, eyes, state) })
      } else if (msg.op === 'observe') {
        send({ ok: true, obs: observe(bot, eyes, state) })
      } else if (msg.op === 'stats') {
        send({ ok: true, rss: process.memoryUsage().rss, pid: process.pid })
      } else if (msg.op === 'quit') {
        process.exit(0)
      } else {
        send({ ok: false, error: `unknown op ${msg.op}` })
      }
    }).catch(err => { process.stderr.write(`${err.stack}\n`); process.exit(1) })
  })
}

process.on('uncaughtException', err => { process.stderr.write(`${err.stack}\n`); process.exit(1) })
main().catch(err => { process.stderr.write(`${err.stack}\n`); process.exit(1) })
