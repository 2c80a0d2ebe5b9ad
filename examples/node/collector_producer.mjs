// Runnable example: a Node.js storefront sends a visitor's session to shopstream's collector,
// links the visitor to the customer after login, and reads the recommendations back.
//
//   SHOPSTREAM_URL=http://127.0.0.1:6066 SHOPSTREAM_PUBLIC_KEY=... node examples/node/collector_producer.mjs
//
// Prints one JSON object: the collector's counts and the recommendations. Exit 1 on an error.
import { Shopstream } from "./shopstream.mjs";

const ss = new Shopstream({
  url: process.env.SHOPSTREAM_URL || "http://127.0.0.1:6066",
  key: process.env.SHOPSTREAM_PUBLIC_KEY || "",
});
const run = process.env.EXAMPLE_RUN || Date.now().toString(36);
const anon = `anon-${run}`, customer = process.env.EXAMPLE_CUSTOMER || `customer-${run}`;
const session = `s-${run}`;
const t0 = Date.now() - 60000;

// browsing anonymously: three products, one into the cart
["sku-1", "sku-2", "sku-3"].forEach((item, i) =>
  ss.track({ type: "view", user_id: anon, session_id: session, item_id: item, category: "shoes",
             price: 40 + i, ts: t0 + i * 1000 }));
ss.track({ type: "add_to_cart", user_id: anon, session_id: session, item_id: "sku-2", price: 41,
           quantity: 1, ts: t0 + 4000 });
// login: the same session continues as the customer
ss.identify(anon, customer);
ss.track({ type: "purchase", user_id: customer, session_id: session, item_id: "sku-2", price: 41,
           quantity: 1, ts: t0 + 9000 });
ss.track({ type: "view", user_id: customer, session_id: session, item_id: "sku-1", ts: t0 + 12000 });
// a mistake the collector reports instead of losing it
ss.track({ type: "view", user_id: customer, session_id: session, ts: t0 + 13000 });

try {
  const answer = await ss.flush();
  const rejected = answer.results.filter((r) => r.status === "rejected");
  await new Promise((resolve) => setTimeout(resolve, 1500)); // the worker processes the batch
  const recommendations = await ss.recommendations(customer, 5);
  console.log(JSON.stringify({ accepted: answer.accepted, rejected: answer.rejected,
    identified: answer.identified, reasons: rejected.map((r) => r.reason), customer, recommendations }));
} catch (err) {
  console.error(`collector_producer: ${err.message}`);
  process.exit(1);
}
