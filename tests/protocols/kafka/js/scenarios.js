// kafkajs scenarios run by tests/protocols/kafka/test_kafkajs.py against a real
// `odradek serve`: `node scenarios.js NAME '{"brokers": [...], ...}'` prints one JSON
// document with what the scenario saw, or exits non-zero with the error on stderr.
'use strict'

const { Kafka, logLevel } = require('kafkajs')

const DEADLINE_MS = 30000 // a scenario's waits for records (generous: the tests never time)

function client(args) {
  const config = {
    clientId: 'odradek-kafkajs-test',
    brokers: args.brokers,
    logLevel: logLevel.ERROR,
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
    connectionTimeout: 5000,
  }
  if (args.sasl) config.sasl = args.sasl
  return new Kafka(config)
}

function messages(prefix, count) {
  const out = []
  for (let i = 0; i < count; i++) {
    out.push({ key: `k${i}`, value: `${prefix}${i}`, headers: { n: String(i) } })
  }
  return out
}

// Read `count` records of `topic` as a member of `groupId`; resolves with them, in order
// per partition, after the consumer committed its offsets.
async function consume(kafka, topic, groupId, count, options = {}) {
  const consumer = kafka.consumer({
    groupId,
    readUncommitted: options.readUncommitted || false,
    heartbeatInterval: 500,
    sessionTimeout: 10000,
    rebalanceTimeout: 10000,
    maxWaitTimeInMs: 100,
  })
  const seen = []
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  let done
  const finished = new Promise(resolve => (done = resolve))
  await consumer.run({
    autoCommitThreshold: 1,
    eachMessage: async ({ partition, message }) => {
      seen.push({
        partition,
        offset: Number(message.offset),
        key: message.key ? message.key.toString() : null,
        value: message.value.toString(),
        headers: Object.fromEntries(
          Object.entries(message.headers || {}).map(([k, v]) => [k, v.toString()])
        ),
      })
      if (options.until ? options.until(seen) : seen.length >= count) done()
    },
  })
  const timer = setTimeout(() => done(), DEADLINE_MS)
  await finished
  clearTimeout(timer)
  await consumer.disconnect() // commits the offsets of what was read
  return seen
}

// Every record of a topic a read_committed reader is served, without the plain record
// written first at the end of each partition: once the reader saw all of those, it saw
// everything before them (aborted or fenced records included, were they served).
async function readAll(kafka, topic, groupId, partitions) {
  const plain = kafka.producer()
  await plain.connect()
  const ends = []
  for (let partition = 0; partition < partitions; partition++) {
    ends.push({ partition, value: `end${partition}` })
  }
  await plain.send({ topic, acks: -1, messages: ends })
  await plain.disconnect()
  const isEnd = record => record.value.startsWith('end')
  const seen = await consume(kafka, topic, groupId, 0, {
    until: records => records.filter(isEnd).length >= partitions,
  })
  return seen.filter(record => !isEnd(record))
}

async function until(condition, what) {
  const deadline = Date.now() + DEADLINE_MS
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

const scenarios = {
  // Produce keyed records with headers, read them back in a group, and report the lag
  // that the admin client computes from the committed offsets and the partitions' ends.
  async produceConsume(args) {
    const kafka = client(args)
    const producer = kafka.producer()
    await producer.connect()
    const sent = await producer.send({ topic: args.topic, acks: -1, messages: messages('v', args.count) })
    await producer.disconnect()
    const seen = await consume(kafka, args.topic, args.group, args.count)
    const admin = kafka.admin()
    await admin.connect()
    const committed = await admin.fetchOffsets({ groupId: args.group, topics: [args.topic] })
    const ends = await admin.fetchTopicOffsets(args.topic)
    await admin.disconnect()
    return { sent, seen, committed, ends }
  },

  // Two members of one group share a topic's partitions: once both hold a share of the
  // same generation, records are produced; each is read once, by its partition's owner.
  async group(args) {
    const kafka = client(args)
    const members = [0, 1].map(() =>
      kafka.consumer({
        groupId: args.group,
        heartbeatInterval: 200,
        sessionTimeout: 10000,
        rebalanceTimeout: 10000,
        maxWaitTimeInMs: 100,
      })
    )
    const seen = [[], []]
    const assigned = [[], []]
    const generation = [-1, -1]
    for (const [i, consumer] of members.entries()) {
      consumer.on(consumer.events.GROUP_JOIN, event => {
        assigned[i] = event.payload.memberAssignment[args.topic] || []
        generation[i] = event.payload.generationId
      })
      await consumer.connect()
      await consumer.subscribe({ topics: [args.topic], fromBeginning: true })
      await consumer.run({ eachMessage: async ({ message }) => seen[i].push(message.value.toString()) })
    }
    const shared = () =>
      generation[0] === generation[1] &&
      assigned[0].length > 0 &&
      assigned[1].length > 0 &&
      assigned[0].length + assigned[1].length === args.partitions
    await until(shared, 'both members to share the partitions')
    const producer = kafka.producer()
    await producer.connect()
    await producer.send({ topic: args.topic, acks: -1, messages: messages('g', args.count) })
    await producer.disconnect()
    await until(() => seen[0].length + seen[1].length >= args.count, 'every record to be read')
    await Promise.all(members.map(consumer => consumer.disconnect()))
    return { assigned, members: seen }
  },

  // A compacted topic made through kafkajs's admin: keyed rounds, a tombstone, and a
  // keyless record (refused: a compacted topic keeps records by key).
  async compactedProduce(args) {
    const kafka = client(args)
    const admin = kafka.admin()
    await admin.connect()
    await admin.createTopics({
      topics: [
        {
          topic: args.topic,
          numPartitions: 1,
          configEntries: [
            { name: 'cleanup.policy', value: 'compact' },
            { name: 'segment.bytes', value: String(args.segmentBytes) },
          ],
        },
      ],
    })
    const configs = await admin.describeConfigs({
      resources: [{ type: 2, name: args.topic, configNames: ['cleanup.policy'] }],
      includeSynonyms: false,
    })
    await admin.disconnect()
    const producer = kafka.producer()
    await producer.connect()
    for (let round = 0; round < args.rounds; round++) {
      const batch = []
      for (let key = 0; key < args.keys; key++) {
        batch.push({ key: `k${key}`, value: `${round}:` + '.'.repeat(args.padding) })
      }
      await producer.send({ topic: args.topic, acks: -1, messages: batch })
    }
    await producer.send({ topic: args.topic, acks: -1, messages: [{ key: 'k0', value: null }] })
    let keyless = null
    try {
      await producer.send({ topic: args.topic, acks: -1, messages: [{ value: 'keyless' }] })
    } catch (error) {
      keyless = error.type || error.name
    }
    await producer.disconnect()
    const policy = configs.resources[0].configEntries.find(e => e.configName === 'cleanup.policy')
    return { policy: policy && policy.configValue, keyless }
  },

  // Every record of partition 0 of a topic, read from its start to its high watermark.
  async readToEnd(args) {
    const kafka = client(args)
    const admin = kafka.admin()
    await admin.connect()
    const ends = await admin.fetchTopicOffsets(args.topic)
    await admin.disconnect()
    const high = Number(ends.find(p => p.partition === 0).high)
    const records = []
    const consumer = kafka.consumer({ groupId: args.group, maxWaitTimeInMs: 100 })
    await consumer.connect()
    await consumer.subscribe({ topics: [args.topic], fromBeginning: true })
    await consumer.run({
      eachMessage: async ({ message }) => {
        records.push({
          offset: Number(message.offset),
          key: message.key && message.key.toString(),
          value: message.value && message.value.toString(),
        })
      },
    })
    await until(() => records.length > 0 && records[records.length - 1].offset + 1 >= high, 'the end')
    await consumer.disconnect()
    return { high, records }
  },

  // A second producer with the same transactional id fences the first: the first's next
  // send and its commit are refused with the broker's reason; only the second's records
  // are ever read.
  async fencing(args) {
    const kafka = client(args)
    const settings = { transactionalId: args.transactionalId, idempotent: true, maxInFlightRequests: 1 }
    const first = kafka.producer(settings)
    await first.connect()
    const old = await first.transaction()
    await old.send({ topic: args.topic, messages: [{ key: 'a', value: 'first0' }] })
    const second = kafka.producer(settings)
    await second.connect()
    const current = await second.transaction()
    await current.send({ topic: args.topic, messages: [{ key: 'b', value: 'second0' }] })
    const refused = {}
    for (const [name, step] of [
      ['send', () => old.send({ topic: args.topic, messages: [{ key: 'a', value: 'first1' }] })],
      ['commit', () => old.commit()],
    ]) {
      try {
        await step()
        refused[name] = null
      } catch (error) {
        refused[name] = { type: error.type || null, name: error.name, message: error.message }
      }
    }
    await current.commit()
    await Promise.all([first.disconnect().catch(() => {}), second.disconnect()])
    const seen = await readAll(kafka, args.topic, args.group, args.partitions)
    return { refused, values: seen.map(r => r.value) }
  },

  async admin(args) {
    const kafka = client(args)
    const admin = kafka.admin()
    await admin.connect()
    const created = await admin.createTopics({
      topics: [{ topic: args.topic, numPartitions: 3 }],
      waitForLeaders: true,
    })
    const metadata = await admin.fetchTopicMetadata({ topics: [args.topic] })
    const listed = (await admin.listTopics()).includes(args.topic)
    await admin.deleteTopics({ topics: [args.topic] })
    const afterDelete = (await admin.listTopics()).includes(args.topic)
    await admin.disconnect()
    return {
      created,
      partitions: metadata.topics[0].partitions.map(p => p.partitionId).sort(),
      listed,
      afterDelete,
    }
  },

  // A transactional producer: one transaction committed, one aborted, one that also
  // commits a group's offsets (sendOffsets); a read_committed consumer then reads.
  async transactions(args) {
    const kafka = client(args)
    const setup = kafka.admin()
    await setup.connect()
    await setup.createTopics({ topics: [{ topic: args.source }, { topic: args.topic }], waitForLeaders: true })
    await setup.disconnect()
    const producer = kafka.producer({
      transactionalId: args.transactionalId,
      idempotent: true,
      maxInFlightRequests: 1,
    })
    await producer.connect()
    let transaction = await producer.transaction()
    await transaction.send({ topic: args.topic, messages: messages('committed', 3) })
    await transaction.commit()
    transaction = await producer.transaction()
    await transaction.send({ topic: args.topic, messages: messages('aborted', 3) })
    await transaction.abort()
    transaction = await producer.transaction()
    await transaction.send({ topic: args.topic, messages: messages('offsets', 2) })
    await transaction.sendOffsets({
      consumerGroupId: args.group,
      topics: [{ topic: args.source, partitions: [{ partition: 0, offset: '5' }] }],
    })
    await transaction.commit()
    await producer.disconnect()
    const seen = await readAll(kafka, args.topic, args.group + '-reader', args.partitions)
    const admin = kafka.admin()
    await admin.connect()
    const committed = await admin.fetchOffsets({ groupId: args.group, topics: [args.source] })
    await admin.disconnect()
    return { values: seen.map(r => r.value), committed }
  },
}

async function main() {
  const [name, json] = process.argv.slice(2)
  const scenario = scenarios[name]
  if (!scenario) throw new Error(`no scenario ${name}`)
  const result = await scenario(JSON.parse(json))
  process.stdout.write(JSON.stringify(result) + '\n')
}

main().then(
  () => process.exit(0),
  error => {
    process.stderr.write(`${error.name}: ${error.message}\n${error.stack}\n`)
    process.exit(1)
  }
)
