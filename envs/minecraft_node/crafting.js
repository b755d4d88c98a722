'use strict'
// Crafting as an inventory transform, checked against minecraft-data's recipes: flying-squid
// never fills a crafting window's result slot (issue 17), so the server performs the recipe on
// the player's inventory. Pure functions over slot arrays; server_plugin.js applies them.

const MAIN = [9, 35] // inventory window slots: 9-35 main, 36-44 hotbar
const HOTBAR = [36, 44]

// Ingredient counts of one recipe (item id -> n), and whether it needs a 3x3 grid.
function needsOf (recipe) {
  const ids = recipe.inShape ? recipe.inShape.flat() : recipe.ingredients
  const counts = new Map()
  for (const id of ids) {
    if (id === null || id === undefined) continue
    const key = typeof id === 'object' ? id.id : id
    counts.set(key, (counts.get(key) || 0) + 1)
  }
  const big = recipe.inShape
    ? recipe.inShape.length > 2 || recipe.inShape.some(row => row.length > 2)
    : recipe.ingredients.length > 4
  return { counts, table: big }
}

function heldCounts (slots) {
  const counts = new Map()
  for (let s = MAIN[0]; s <= HOTBAR[1]; s++) {
    const item = slots[s]
    if (item) counts.set(item.type, (counts.get(item.type) || 0) + item.count)
  }
  return counts
}

// The first recipe for `itemId` the inventory can pay for: { recipe, needs } or { error }.
function chooseRecipe (recipes, slots, tableNear) {
  if (!recipes || recipes.length === 0) return { error: 'no crafting recipe' }
  const held = heldCounts(slots)
  let error = 'missing ingredients'
  for (const recipe of recipes) {
    const needs = needsOf(recipe)
    const enough = [...needs.counts].every(([id, n]) => (held.get(id) || 0) >= n)
    if (!enough) continue
    if (needs.table && !tableNear) { error = 'needs a crafting table within reach'; continue }
    return { recipe, needs }
  }
  return { error }
}

// Slot changes that pay `needs` and add `count` of `resultId` ([slot, {type, count}|null]);
// null when the result does not fit. Results go to the hotbar first: tools are held from there.
function transform (slots, needs, resultId, count, stackSize) {
  const next = slots.map(item => item && { type: item.type, count: item.count })
  for (const [id, n] of needs.counts) {
    let left = n
    for (let s = MAIN[0]; s <= HOTBAR[1] && left > 0; s++) {
      const item = next[s]
      if (!item || item.type !== id) continue
      const take = Math.min(left, item.count)
      item.count -= take
      left -= take
      if (item.count === 0) next[s] = null
    }
  }
  let left = count
  const order = [...range(HOTBAR), ...range(MAIN)]
  for (const s of order) {
    const item = next[s]
    if (left > 0 && item && item.type === resultId && item.count < stackSize) {
      const add = Math.min(left, stackSize - item.count)
      item.count += add
      left -= add
    }
  }
  for (const s of order) {
    if (left > 0 && !next[s]) {
      next[s] = { type: resultId, count: Math.min(left, stackSize) }
      left -= next[s].count
    }
  }
  if (left > 0) return null
  const changes = []
  for (let s = MAIN[0]; s <= HOTBAR[1]; s++) {
    const a = slots[s]; const b = next[s]
    if ((a ? `${a.type}:${a.count}` : '') !== (b ? `${b.type}:${b.count}` : '')) changes.push([s, b])
  }
  return changes
}

function range ([lo, hi]) {
  const out = []
  for (let s = lo; s <= hi; s++) out.push(s)
  return out
}

module.exports = { needsOf, heldCounts, chooseRecipe, transform }
