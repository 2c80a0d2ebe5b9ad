// A storefront backend in Node.js sending events to shopstream's collector (POST /v1/events).
// No dependencies: Node 18+ has fetch. Usage: docs/storefront.md, and collector_producer.mjs.
//
//   import { Shopstream } from "./shopstream.mjs";
//   const ss = new Shopstream({ url: "http://127.0.0.1:6066", key: process.env.SHOPSTREAM_PUBLIC_KEY });
//   ss.track({ type: "view", user_id: "u42", session_id: "s9", item_id: "sku-7" });
//   await ss.flush();   // -> the collector's answer, one entry per event

import { randomUUID } from "node:crypto";

export class Shopstream {
  constructor({ url, key = "", batchSize = 200, retries = 5, timeoutMs = 10000 }) {
    this.url = url.replace(/\/$/, "");
    this.key = key;
    this.batchSize = batchSize;
    this.retries = retries;
    this.timeoutMs = timeoutMs;
    this.queue = [];
  }

  // Queue one contract event; event_id and ts are filled in when missing.
  track(event) {
    this.queue.push({ event_id: randomUUID(), ts: Date.now(), ...event });
  }

  // After login: the visitor's anonymous id now belongs to this customer.
  identify(anonymousId, userId) {
    this.queue.push({ type: "identify", anonymous_id: anonymousId, user_id: userId });
  }

  // Send everything queued, batchSize events per request. 429 and 503 are retried after
  // Retry-After (or with backoff): event ids make a repeated event a duplicate the worker
  // drops. Resolves to the merged answer; rejected events are in it with their reason.
  async flush() {
    const total = { accepted: 0, rejected: 0, failed: 0, identified: 0, ignored: 0, results: [] };
    while (this.queue.length) {
      const batch = this.queue.splice(0, this.batchSize);
      const answer = await this.#post(batch);
      for (const k of ["accepted", "rejected", "failed", "identified", "ignored"]) total[k] += answer[k] || 0;
      total.results.push(...answer.results.map((r) => ({ ...r, index: r.index + total.results.length })));
    }
    return total;
  }

  async recommendations(userId, k = 5) {
    const res = await fetch(`${this.url}/recommendations/${encodeURIComponent(userId)}?k=${k}`, {
      headers: this.#headers(), signal: AbortSignal.timeout(this.timeoutMs),
    });
    if (!res.ok) throw new Error(`recommendations: HTTP ${res.status} ${await res.text()}`);
    return (await res.json()).items;
  }

  #headers() {
    const h = { "Content-Type": "application/json" };
    if (this.key) h.Authorization = `Bearer ${this.key}`;
    return h;
  }

  async #post(batch) {
    for (let attempt = 0; ; attempt++) {
      const res = await fetch(`${this.url}/v1/events`, {
        method: "POST", headers: this.#headers(), body: JSON.stringify(batch),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      if ((res.status === 429 || res.status === 503) && attempt < this.retries) {
        const wait = Number(res.headers.get("Retry-After")) || 2 ** attempt * 0.2;
        await new Promise((resolve) => setTimeout(resolve, wait * 1000));
        continue;
      }
      const body = await res.json();
      if (!res.ok) throw new Error(`collector: HTTP ${res.status} ${JSON.stringify(body)}`);
      return body;
    }
  }
}
