// Plays a scripted session through @segment/analytics-next in the page, unmodified but for
// its host settings. Bundled for the browser by the tests (esbuild); exposes
// window.conformance.run(config) → { results, anonymousId, userId, failures }.
//
// config: writeKey; cdnURL (settings fetched from {cdnURL}/v1/projects/{writeKey}/settings)
// or cdnSettings (given inline); segment (the 'Segment.io' integration options: apiHost,
// protocol, deliveryStrategy); calls (tests/conformance/script.py). Each result holds the
// messageId, userId, anonymousId, timestamp and context analytics.js put in the event when
// the call returned.
import { AnalyticsBrowser } from '@segment/analytics-next'

const failures = []

function describe(ctx) {
  const event = ctx.event
  return {
    messageId: event.messageId,
    type: event.type,
    userId: event.userId ?? null,
    anonymousId: event.anonymousId ?? null,
    timestamp: event.timestamp instanceof Date ? event.timestamp.toISOString() : event.timestamp,
    context: event.context ?? null,
    failed: ctx.failedDelivery() ? String(ctx.failedDelivery().reason) : null,
  }
}

// A property cut in the middle of a surrogate pair, as a page that truncates text makes it.
function properties(step) {
  const props = { ...(step.properties ?? {}) }
  for (const key of step.truncateMidEmoji ?? []) props[key] = props[key].slice(0, -1)
  return props
}

function call(analytics, step) {
  const options = step.timestamp ? { timestamp: new Date(step.timestamp) } : {}
  switch (step.call) {
    case 'identify':
      return analytics.identify(step.userId, step.traits, options)
    case 'track':
      return analytics.track(step.event, properties(step), options)
    case 'page':
    case 'screen':
      return step.category
        ? analytics[step.call](step.category, step.name, properties(step), options)
        : analytics[step.call](step.name, properties(step), options)
    case 'alias':
      return step.previousId
        ? analytics.alias(step.userId, step.previousId, options)
        : analytics.alias(step.userId, options)
    case 'group':
      return analytics.group(step.groupId, step.traits, options)
    default:
      throw new Error(`unknown call ${step.call}`)
  }
}

async function run(config) {
  const settings = { writeKey: config.writeKey }
  if (config.cdnURL) settings.cdnURL = config.cdnURL
  if (config.cdnSettings) settings.cdnSettings = config.cdnSettings
  const [analytics] = await AnalyticsBrowser.load(settings, {
    integrations: { 'Segment.io': config.segment ?? {} },
  })
  analytics.on('error', (error) => failures.push(String(error?.reason ?? error?.code ?? error)))
  const results = []
  for (const step of config.calls) {
    results.push(describe(await call(analytics, step)))
  }
  return {
    results,
    anonymousId: analytics.user().anonymousId(),
    userId: analytics.user().id(),
    failures,
  }
}

window.conformance = { run, failures: () => failures.slice() }
