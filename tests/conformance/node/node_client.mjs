// Plays a scripted session through @segment/analytics-node, unmodified but for its host,
// and prints what each call sent as JSON on stdout.
//
// Usage: node node_client.mjs CONFIG.json, config: host, writeKey, flushAt, flushTimeoutMs,
// calls (tests/conformance/script.py). Output: results (per call: the messageId, userId,
// anonymousId, timestamp and context the library put in the event, and the delivery error
// its callback reported, if any), errors (the library's 'error' events) and flushed (false
// when some callback had not come within flushTimeoutMs).
import { readFileSync } from 'node:fs'
import { Analytics } from '@segment/analytics-node'

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const analytics = new Analytics({
  writeKey: config.writeKey,
  host: config.host,
  flushAt: config.flushAt,
  flushInterval: 200,
  maxRetries: 6,
  httpRequestTimeout: 10000,
})
const errors = []
analytics.on('error', (err) => errors.push(String(err?.reason ?? err?.code ?? err)))

function options(step) {
  const common = {}
  if (step.userId) common.userId = step.userId
  if (step.anonymousId) common.anonymousId = step.anonymousId
  if (step.context) common.context = step.context
  if (step.timestamp) common.timestamp = new Date(step.timestamp)
  return common
}

function send(step) {
  const common = options(step)
  const params = {
    identify: () => ({ ...common, traits: step.traits }),
    track: () => ({ ...common, event: step.event, properties: step.properties }),
    page: () => ({
      ...common,
      category: step.category,
      name: step.name,
      properties: step.properties,
    }),
    screen: () => ({
      ...common,
      category: step.category,
      name: step.name,
      properties: step.properties,
    }),
    alias: () => ({ ...common, previousId: step.previousId }),
    group: () => ({ ...common, groupId: step.groupId, traits: step.traits }),
  }[step.call]()
  return new Promise((resolve) => {
    analytics[step.call](params, (err, ctx) => {
      const event = ctx?.event ?? {}
      resolve({
        messageId: event.messageId,
        type: event.type,
        userId: event.userId ?? null,
        anonymousId: event.anonymousId ?? null,
        timestamp: event.timestamp instanceof Date ? event.timestamp.toISOString() : event.timestamp,
        context: event.context ?? null,
        error: err ? String(err.reason ?? err) : null,
      })
    })
  })
}

const results = config.calls.map((step) => ({ call: step.call, error: 'no callback in time' }))
const settled = Promise.all(
  config.calls.map((step, index) => send(step).then((result) => (results[index] = result))),
)
let timer
const timeout = new Promise((resolve) => (timer = setTimeout(resolve, config.flushTimeoutMs)))
const inTime = await Promise.race([settled.then(() => true), timeout.then(() => false)])
clearTimeout(timer)
const closed = await analytics
  .closeAndFlush({ timeout: 2000 })
  .then(() => true)
  .catch(() => false)
const flushed = inTime && closed
process.stdout.write(JSON.stringify({ results, errors, flushed }), () => process.exit(0))
