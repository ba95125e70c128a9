// The Node side of tests/interop/test_node.py: the official NATS JavaScript client (npm "nats")
// asks a corps actor, gets a typed error with the services API's headers, publishes a JSON event
// to JetStream, and discovers the actor class through $SRV. Prints one JSON object of results.
//
// usage: node interop.mjs SERVER_URL ACTOR_SUBJECT EVENTS_SUBJECT SERVICE_NAME SERVICE_ID
import {
  connect,
  headers,
  JSONCodec,
  RequestStrategy,
  ServiceError,
} from "nats";

const [url, actorSubject, eventsSubject, serviceName, serviceId] = process.argv.slice(2);
const jc = JSONCodec();
const nc = await connect({ servers: url, name: "corps-interop-node" });
const out = {};
try {
  // An ask: a bare tagged map in JSON, with the caller's correlation id in a header.
  const h = headers();
  h.set("Corps-Corr", "node-corr-1");
  const reply = await nc.request(actorSubject, jc.encode({ $type: "Hello", name: "node" }), {
    timeout: 5000,
    headers: h,
  });
  out.ask = jc.decode(reply.data);
  out.askIsServiceError = ServiceError.isServiceError(reply);

  // A failing ask: nats.js reads the services API's error headers.
  const failed = await nc.request(actorSubject, jc.encode({ $type: "Boom", why: "from node" }), { timeout: 5000 });
  const err = ServiceError.toServiceError(failed);
  out.error = { code: err?.code, message: err?.message, body: jc.decode(failed.data) };

  // A JSON event, published to the stream with JetStream's dedupe id and a traceparent.
  const eh = headers();
  eh.set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  const ack = await nc.jetstream().publish(eventsSubject, jc.encode({ $type: "Shouted", text: "from node" }), {
    msgID: "node-event-1",
    headers: eh,
  });
  out.eventSeq = ack.seq;

  // Discovery through the services API, as `nats micro` does.
  const svc = nc.services.client({ strategy: RequestStrategy.Count, maxMessages: 1, maxWait: 5000 });
  const first = async (it) => {
    for await (const x of await it) return x;
    return null;
  };
  out.ping = await first(svc.ping(serviceName, serviceId));
  out.info = await first(svc.info(serviceName, serviceId));
  out.stats = await first(svc.stats(serviceName, serviceId));
} finally {
  await nc.drain();
}
console.log(JSON.stringify(out));
