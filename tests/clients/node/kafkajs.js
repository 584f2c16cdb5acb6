// KafkaJS side of the real-client suite, driven from pytest (clients.py `kafkajs`).
//
//   node kafkajs.js <command> '<json args>'
//
// Each command prints one JSON line with its result on stdout and exits 0, or prints the
// error on stderr and exits 1. Commands:
//
//   produce    {bootstrap, topic, count, start, keyCount, padBytes, compression, acks,
//               idempotent, partitions}  -> {sent, metadata}
//   consume    {bootstrap, topic, partitions, count, timeoutMs, fromOffset}
//              -> {messages: [[partition, offset, key, value], ...]}
//   long_poll  {bootstrap, topic, partition, offset, maxWaitMs}
//              prints {"fetching": true} once its fetch is about to be sent, then
//              -> {messages, fetchStartMs, fetchEndMs} (wall-clock ms, Date.now())
//   admin      {bootstrap, ops: [[method, ...args], ...]} -> {results: [...]}, one
//              result per KafkaJS admin method call
//   group_consume {bootstrap, group, topics, session_ms, heartbeat_ms} -> a consumer-group
//              member that prints event lines until SIGTERM (see group_member.py)
//
// KafkaJS has no manual-assignment consumer: its Consumer always joins a group. So
// `consume` and `long_poll` fetch through KafkaJS's own cluster and broker objects, which
// run the same Fetch encoding, record-batch decoding and decompression as its Consumer,
// without the group protocol; `group_consume` is the real Consumer in a group.

'use strict'

const {
  Kafka,
  logLevel,
  CompressionTypes,
  CompressionCodecs,
} = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')
const lz4 = require('lz4js')

// KafkaJS ships only gzip. Snappy comes from kafkajs-snappy (pure JS); LZ4 frames from
// lz4js (pure JS). No pure-JS zstd encoder exists, so zstd is not tested with KafkaJS.
CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
CompressionCodecs[CompressionTypes.LZ4] = () => ({
  compress: async encoder => Buffer.from(lz4.compress(encoder.buffer)),
  decompress: async buffer => Buffer.from(lz4.decompress(buffer)),
})

const COMPRESSION = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
}

function client(bootstrap) {
  return new Kafka({
    clientId: 'keel-test-kafkajs',
    brokers: [bootstrap],
    logLevel: logLevel.ERROR,
    connectionTimeout: 5000,
    requestTimeout: 15000,
    retry: { retries: 5, initialRetryTime: 200 },
  })
}

// The Cluster that Kafka#producer/consumer/admin build internally (private in KafkaJS).
function cluster(kafka) {
  const sym = Object.getOwnPropertySymbols(kafka).find(
    s => s.toString() === 'Symbol(private:Kafka:createCluster)'
  )
  if (!sym) throw new Error('KafkaJS internals changed: no createCluster symbol')
  return kafka[sym]({ allowAutoTopicCreation: true })
}

// The same messages as clients.py keyed_messages().
function makeMessages(start, count, keyCount, padBytes) {
  const pad = 'x'.repeat(padBytes)
  const out = []
  for (let i = start; i < start + count; i++) {
    out.push({ key: `key-${i % keyCount}`, value: `${i}|${pad}` })
  }
  return out
}

async function produce(a) {
  const kafka = client(a.bootstrap)
  const idempotent = Boolean(a.idempotent)
  const producer = kafka.producer({ idempotent, maxInFlightRequests: idempotent ? 1 : 5 })
  await producer.connect()
  const messages = makeMessages(a.start || 0, a.count, a.keyCount || 1000, a.padBytes ?? 64)
  if (a.partitions) messages.forEach((m, i) => (m.partition = i % a.partitions))
  const metadata = []
  const chunk = a.chunk || 1000
  try {
    for (let i = 0; i < messages.length; i += chunk) {
      const res = await producer.send({
        topic: a.topic,
        messages: messages.slice(i, i + chunk),
        acks: a.acks ?? -1,
        compression: COMPRESSION[a.compression || 'none'],
      })
      metadata.push(...res)
    }
  } finally {
    await producer.disconnect()
  }
  return { sent: messages.length, metadata }
}

async function fetchOnce(broker, topic, offsets, maxWaitMs) {
  const res = await broker.fetch({
    replicaId: -1,
    isolationLevel: 0,
    maxWaitTime: maxWaitMs,
    minBytes: 1,
    maxBytes: 10 * 1024 * 1024,
    topics: [
      {
        topic,
        partitions: Object.entries(offsets).map(([p, off]) => ({
          partition: Number(p),
          fetchOffset: String(off),
          maxBytes: 1024 * 1024,
        })),
      },
    ],
  })
  const out = []
  for (const t of res.responses) {
    for (const p of t.partitions) {
      if (p.errorCode !== 0) throw new Error(`fetch ${topic}/${p.partition}: error ${p.errorCode}`)
      for (const m of p.messages) {
        // A fetch returns whole batches: skip records before the offset asked for.
        if (BigInt(m.offset) < BigInt(offsets[p.partition])) continue
        out.push([
          p.partition,
          m.offset,
          m.key === null ? null : m.key.toString(),
          m.value === null ? null : m.value.toString(),
        ])
      }
    }
  }
  return out
}

async function withLeader(a, partitions, fn) {
  const c = cluster(client(a.bootstrap))
  await c.connect()
  try {
    await c.addTargetTopic(a.topic)
    await c.refreshMetadata()
    const leaders = c.findLeaderForPartitions(a.topic, partitions)
    const nodeIds = Object.keys(leaders)
    if (nodeIds.length !== 1) throw new Error(`expected one leader, got ${JSON.stringify(leaders)}`)
    const broker = await c.findBroker({ nodeId: nodeIds[0] })
    return await fn(broker)
  } finally {
    await c.disconnect()
  }
}

async function consume(a) {
  const offsets = {}
  for (const p of a.partitions) offsets[p] = a.fromOffset || 0
  const messages = []
  const deadline = Date.now() + (a.timeoutMs || 60000)
  await withLeader(a, a.partitions, async broker => {
    while (messages.length < a.count && Date.now() < deadline) {
      const got = await fetchOnce(broker, a.topic, offsets, 500)
      for (const m of got) offsets[m[0]] = (BigInt(m[1]) + 1n).toString()
      messages.push(...got)
    }
  })
  return { messages }
}

async function longPoll(a) {
  return withLeader(a, [a.partition], async broker => {
    // Warm the connection first, so the timed fetch is one round trip.
    await broker.apiVersions()
    console.log(JSON.stringify({ fetching: true }))
    const fetchStartMs = Date.now()
    const messages = await fetchOnce(broker, a.topic, { [a.partition]: a.offset }, a.maxWaitMs)
    return { messages, fetchStartMs, fetchEndMs: Date.now() }
  })
}

async function admin(a) {
  const adm = client(a.bootstrap).admin()
  await adm.connect()
  const results = []
  try {
    for (const [method, ...args] of a.ops) {
      const r = await adm[method](...args)
      results.push(r === undefined ? null : r)
    }
  } finally {
    await adm.disconnect()
  }
  return { results }
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function seqOf(value) {
  const n = parseInt((value || Buffer.from('-1')).toString().split('|', 1)[0], 10)
  return Number.isNaN(n) ? -1 : n
}

// A consumer-group member (see group_member.py for the line protocol it shares): commits
// the records of each batch after processing them, prints an event line per assignment and
// per commit, and leaves the group on SIGTERM.
async function groupConsume(a) {
  const consumer = client(a.bootstrap).consumer({
    groupId: a.group,
    sessionTimeout: a.session_ms,
    heartbeatInterval: a.heartbeat_ms,
    rebalanceTimeout: a.rebalance_ms || 10000,
    metadataMaxAge: 1000,
    retry: { retries: 20, initialRetryTime: 100 },
  })
  consumer.on(consumer.events.GROUP_JOIN, e => {
    const parts = Object.values(e.payload.memberAssignment).flat().sort((x, y) => x - y)
    emit({ event: 'assigned', partitions: parts, member_id: e.payload.memberId })
  })
  await consumer.connect()
  for (const topic of a.topics) await consumer.subscribe({ topic, fromBeginning: true })
  const stopped = new Promise(resolve => process.on('SIGTERM', resolve))
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset }) => {
      if (batch.messages.length === 0) return
      const records = batch.messages.map(m => [batch.partition, Number(m.offset), seqOf(m.value)])
      const last = batch.messages[batch.messages.length - 1].offset
      const next = (BigInt(last) + 1n).toString()
      try {
        await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: next }])
      } catch (e) {
        emit({ event: 'commit_failed', error: String(e) })
        throw e
      }
      emit({ event: 'committed', records })
      resolveOffset(last)
    },
  })
  await stopped
  await consumer.disconnect()
  return { event: 'closed' }
}

const COMMANDS = { produce, consume, long_poll: longPoll, admin, group_consume: groupConsume }

async function main() {
  const [command, json] = process.argv.slice(2)
  const fn = COMMANDS[command]
  if (!fn) throw new Error(`unknown command ${command}; have ${Object.keys(COMMANDS)}`)
  const result = await fn(JSON.parse(json || '{}'))
  const line = JSON.stringify(result, (_, v) => (typeof v === 'bigint' ? v.toString() : v))
  // A pipe write is asynchronous in Node: exit only once the whole line is out.
  await new Promise(resolve => process.stdout.write(line + '\n', resolve))
}

main().then(
  () => process.exit(0),
  err => {
    console.error(err && err.stack ? err.stack : err)
    process.exit(1)
  }
)
