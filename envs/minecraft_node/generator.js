'use strict'
// A seeded flat world for peam: grass over dirt, oak trees, and stone outcrops with coal and
// iron ore in them. Every block is a pure function of (seed, x, y, z), so chunks can be made
// in any order and a seed always gives the same world. flying-squid's own generators have no
// trees or ores (issue 17). The spawn column (0, 0) and its neighbours are kept clear, and a
// bedrock wall at `border` blocks from the spawn bounds the play area, as Crafter's 64x64 map
// is bounded: the agent's map of what it has seen is finite (agent/world_memory.py).
const { Vec3 } = require('vec3')
const WORLD = require('./world.json')

const GROUND = WORLD.ground_y
const TREE_CELL = 7 // one tree at most per 7x7 cell
const ROCK_CELL = 11 // one outcrop at most per 11x11 cell
const CLEAR = 2 // blocks around the spawn that stay open
const BORDER = WORLD.border
const WALL = 3 // blocks high: nothing walks or jumps over it

function hash (seed, a, b, salt) {
  let h = (seed | 0) ^ Math.imul(a | 0, 0x27d4eb2d) ^ Math.imul(b | 0, 0x165667b1) ^ Math.imul(salt | 0, 0x9e3779b1)
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

const nearSpawn = (x, z) => Math.abs(x) <= CLEAR && Math.abs(z) <= CLEAR

function outcrop (seed, i, j) {
  const h = hash(seed, i, j, 2)
  if (h % 100 >= 60) return null
  const r = 1 + ((h >>> 8) % 3)
  return { x: i * ROCK_CELL + 3 + ((h >>> 12) % 5), z: j * ROCK_CELL + 3 + ((h >>> 16) % 5), r, top: 1 + ((h >>> 20) % 3) }
}

function rockHeight (rock, x, z) {
  const d = Math.hypot(x - rock.x, z - rock.z)
  if (d > rock.r + 0.3 || nearSpawn(x, z)) return 0
  return Math.max(1, rock.top - Math.floor(d / 1.5))
}

function tree (seed, i, j) {
  const h = hash(seed, i, j, 1)
  if (h % 100 >= 55) return null
  return { x: i * TREE_CELL + 1 + ((h >>> 8) % 5), z: j * TREE_CELL + 1 + ((h >>> 16) % 5), height: 4 + ((h >>> 24) % 2) }
}

function cells (lo, hi, size, margin) {
  const out = []
  for (let c = Math.floor((lo - margin) / size) - 1; c <= Math.floor((hi + margin) / size) + 1; c++) out.push(c)
  return out
}

// Blocks above the ground in one chunk: Map "x,y,z" (world coordinates) -> block name.
function features (seed, cx, cz) {
  const x0 = cx * 16; const z0 = cz * 16
  const inChunk = (x, z) => x >= x0 && x < x0 + 16 && z >= z0 && z < z0 + 16
  const blocks = new Map()
  const rocks = []
  for (const i of cells(x0, x0 + 15, ROCK_CELL, 4)) {
    for (const j of cells(z0, z0 + 15, ROCK_CELL, 4)) {
      const rock = outcrop(seed, i, j)
      if (rock) rocks.push(rock)
    }
  }
  const rockAt = (x, z) => Math.max(0, ...rocks.map(r => rockHeight(r, x, z)))
  for (const i of cells(x0, x0 + 15, TREE_CELL, 3)) {
    for (const j of cells(z0, z0 + 15, TREE_CELL, 3)) {
      const t = tree(seed, i, j)
      if (!t || nearSpawn(t.x, t.z) || rockAt(t.x, t.z) > 0) continue
      for (let dy = t.height - 1; dy <= t.height + 1; dy++) {
        const r = dy >= t.height ? 1 : 2
        for (let dx = -r; dx <= r; dx++) {
          for (let dz = -r; dz <= r; dz++) {
            if (r === 2 && Math.abs(dx) === 2 && Math.abs(dz) === 2) continue
            if (inChunk(t.x + dx, t.z + dz)) blocks.set(`${t.x + dx},${GROUND + dy},${t.z + dz}`, 'oak_leaves')
          }
        }
      }
      for (let dy = 1; dy <= t.height; dy++) {
        if (inChunk(t.x, t.z)) blocks.set(`${t.x},${GROUND + dy},${t.z}`, 'oak_log')
      }
    }
  }
  for (let x = x0; x < x0 + 16; x++) {
    for (let z = z0; z < z0 + 16; z++) {
      const ring = Math.max(Math.abs(x - WORLD.spawn[0]), Math.abs(z - WORLD.spawn[2]))
      if (ring >= BORDER) {
        for (let dy = 1; dy <= WALL; dy++) blocks.set(`${x},${GROUND + dy},${z}`, 'bedrock')
        continue
      }
      const height = rockAt(x, z)
      for (let dy = 1; dy <= height; dy++) {
        const roll = hash(seed, x * 31 + dy, z, 3) % 100
        blocks.set(`${x},${GROUND + dy},${z}`, roll < 12 ? 'coal_ore' : roll < 18 ? 'iron_ore' : 'stone')
      }
    }
  }
  return blocks
}

module.exports = function generation (options) {
  const { registry } = options
  const Chunk = require('prismarine-chunk')(registry)
  const seed = Number(options.worldSeed) | 0
  const state = name => registry.blocksByName[name].defaultState
  const layers = [['bedrock', 0, 0], ['dirt', 1, GROUND - 1], ['grass_block', GROUND, GROUND]]

  return function generateChunk (cx, cz) {
    const chunk = new Chunk()
    for (let x = 0; x < 16; x++) {
      for (let z = 0; z < 16; z++) {
        for (const [name, lo, hi] of layers) {
          for (let y = lo; y <= hi; y++) chunk.setBlockStateId(new Vec3(x, y, z), state(name))
        }
        for (let y = GROUND + 1; y < GROUND + 12; y++) chunk.setSkyLight(new Vec3(x, y, z), 15)
      }
    }
    for (const [key, name] of features(seed, cx, cz)) {
      const [x, y, z] = key.split(',').map(Number)
      chunk.setBlockStateId(new Vec3(x - cx * 16, y, z - cz * 16), state(name))
    }
    return chunk
  }
}
module.exports.features = features
