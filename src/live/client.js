// @ts-self-types="./client.d.ts"
// The live topics client: one dependency-free ES module on the standard
// WebSocket and EventTarget, so that the same file runs in a browser page
// (<script type="module">) and in Deno. It speaks the live wire protocol v1,
// reconnects with backoff, resubscribes its topics from their last positions
// and sends what was published while offline after that. Types and docs are
// in client.d.ts.

const VERSION = 1;
/** Closes that ask the client to come back later (RFC 6455 section 7.4.1, IANA registry): they grow the backoff. */
const SLOW_DOWN_CODES = [1011, 1012, 1013];
/** Policy violation: the server will not take this client (no `connect`, another version), retrying cannot help. */
const POLICY_VIOLATION = 1008;
const OPEN = 1;

/** An answered command's failure, or a request that could not be made: `code` says which. */
export class LiveError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = "LiveError";
    this.code = code;
  }
}

/**
 * @typedef {{ offset: number, epoch: string }} Position
 * @typedef {{ last: number | undefined, recover: boolean, position: Position | undefined, id: number, recovering: boolean }} Subscription
 * @typedef {{ answer: (event: any) => void, lost: (error: LiveError) => void }} Request
 * @typedef {Request & { command: Record<string, unknown> }} Queued
 */

export class LiveClient extends EventTarget {
  #url;
  #protocols;
  #initialDelay;
  #maxDelay;
  #multiplier;
  #maxAttempts;
  #minUptime;
  #connectTimeout;
  #maxQueued;
  #stopCodes;
  #random;

  /** @type {WebSocket | undefined} */
  #ws;
  /** @type {"connecting" | "connected" | "disconnected" | "closed"} */
  #state = "connecting";
  #client = "";
  #everConnected = false;
  /** @type {Map<string, Subscription>} */
  #topics = new Map();
  /** @type {Map<number, Request>} commands sent and not answered yet */
  #requests = new Map();
  /** @type {Queued[]} publications waiting for a connection */
  #queue = [];
  #nextId = 1;
  /** The exponent of the next wait's ceiling; 0 again after a stable connection. */
  #backoff = 0;
  /** Connection attempts since the last stable connection, for maxAttempts. */
  #attempts = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #retryTimer;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #stableTimer;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #connectTimer;

  /**
   * @param {string | URL} url
   * @param {import("./client.d.ts").LiveClientOptions} [options]
   */
  constructor(url, options = {}) {
    super();
    this.#url = String(url);
    this.#protocols = options.protocols ?? [];
    this.#initialDelay = count("initialDelay", options.initialDelay, 250);
    this.#maxDelay = count("maxDelay", options.maxDelay, 30_000);
    this.#multiplier = count("multiplier", options.multiplier, 2, 1);
    this.#maxAttempts = count("maxAttempts", options.maxAttempts, Infinity, 1);
    this.#minUptime = count("minUptime", options.minUptime, 5_000);
    this.#connectTimeout = count(
      "connectTimeout",
      options.connectTimeout,
      10_000,
    );
    this.#maxQueued = count("maxQueued", options.maxQueued, 100);
    this.#stopCodes = options.stopCodes ?? [];
    this.#random = options.random ?? Math.random;
    this.#connect(); // throws the WebSocket constructor's SyntaxError for a bad URL
  }

  /** @returns {"connecting" | "connected" | "disconnected" | "closed"} */
  get state() {
    return this.#state;
  }

  /** The id the server gave the current (or last) connection, `""` before. */
  get client() {
    return this.#client;
  }

  /**
   * @param {string} topic
   * @param {{ last?: number, recover?: boolean }} [options]
   */
  subscribe(topic, options = {}) {
    checkTopic(topic);
    const { last, recover = last === undefined } = options;
    if (last !== undefined && !(Number.isSafeInteger(last) && last > 0)) {
      throw new RangeError("The last option must be a positive integer");
    }
    if (this.#state === "closed") throw new LiveError("closed", "Closed");
    if (this.#topics.has(topic)) return;
    /** @type {Subscription} */
    const sub = {
      last,
      recover,
      position: undefined,
      id: 0,
      recovering: false,
    };
    this.#topics.set(topic, sub);
    if (this.#isOpen()) this.#subscribe(topic, sub);
  }

  /** @param {string} topic */
  unsubscribe(topic) {
    const sub = this.#topics.get(topic);
    if (sub === undefined) return;
    this.#topics.delete(topic);
    this.#requests.delete(sub.id); // a late `subscribed` is then ignored
    if (this.#isOpen()) {
      this.#send({ t: "unsub", topic }, { answer() {}, lost() {} });
    }
  }

  /**
   * @param {string} topic
   * @param {string | Uint8Array | ArrayBuffer | ArrayBufferView} data
   * @returns {Promise<void>}
   */
  publish(topic, data) {
    return new Promise((resolve, reject) => {
      checkTopic(topic);
      const command = typeof data === "string"
        ? { t: "pub", topic, data }
        : { t: "pub", topic, data: toBase64(bytesOf(data)), binary: true };
      /** @type {Request} */
      const request = {
        answer: (event) =>
          event.t === "ok" ? resolve() : reject(errorOf(event)),
        lost: reject,
      };
      if (this.#state === "closed") {
        reject(new LiveError("closed", "The client is closed"));
      } else if (this.#isOpen()) {
        this.#send(command, request);
      } else if (this.#queue.length >= this.#maxQueued) {
        // The newest is refused rather than the oldest dropped: every
        // publication accepted keeps its place and its promise.
        reject(new LiveError("queue-full", "The offline queue is full"));
      } else {
        this.#queue.push({ command, ...request });
      }
    });
  }

  /**
   * @param {string} topic
   * @returns {Promise<import("./client.d.ts").Presence>}
   */
  presence(topic) {
    return new Promise((resolve, reject) => {
      checkTopic(topic);
      if (!this.#isOpen()) {
        reject(
          new LiveError(
            this.#state === "closed" ? "closed" : "disconnected",
            "Not connected",
          ),
        );
        return;
      }
      this.#send({ t: "presence", topic }, {
        answer: (event) =>
          event.t === "presence"
            ? resolve({ count: event.count, members: event.members })
            : reject(errorOf(event)),
        lost: reject,
      });
    });
  }

  close() {
    if (this.#state === "closed") return;
    this.#state = "closed";
    clearTimeout(this.#retryTimer);
    this.#failQueue();
    // The close event then says `disconnected` with willRetry false.
    this.#ws?.close(1000);
  }

  #connect() {
    this.#attempts++;
    this.#state = "connecting";
    const ws = new WebSocket(this.#url, this.#protocols);
    this.#ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ t: "connect", v: VERSION }));
    ws.onmessage = (event) => {
      if (ws === this.#ws) this.#onMessage(event.data);
    };
    ws.onclose = (event) => {
      if (ws === this.#ws) this.#onClose(event.code, event.reason);
    };
    this.#connectTimer = setTimeout(() => ws.close(), this.#connectTimeout);
  }

  #isOpen() {
    return this.#state === "connected" && this.#ws?.readyState === OPEN;
  }

  /**
   * Sends a command with a new id; `request` is told of its answer.
   * @param {Record<string, unknown>} command
   * @param {Request} request
   */
  #send(command, request) {
    const id = this.#nextId++;
    this.#requests.set(id, request);
    /** @type {WebSocket} */ (this.#ws).send(
      JSON.stringify({ ...command, id }),
    );
    return id;
  }

  /**
   * @param {string} topic
   * @param {Subscription} sub
   */
  #subscribe(topic, sub) {
    /** @type {Record<string, unknown>} */
    const command = { t: "sub", topic };
    if (sub.recover && sub.position) command.since = sub.position;
    else if (sub.last !== undefined) command.last = sub.last;
    sub.recovering = command.since !== undefined;
    sub.id = this.#send(command, {
      answer: (event) => {
        if (event.t !== "error") return this.#onSubscribed(topic, sub, event);
        // Refused: retrying on the next connection would be refused again.
        this.#topics.delete(topic);
        this.#emit("error", {
          code: event.code,
          message: event.message,
          topic,
        });
      },
      lost() {}, // resubscribed on the next connection
    });
  }

  /** @param {unknown} data */
  #onMessage(data) {
    let event;
    try {
      event = JSON.parse(/** @type {string} */ (data));
    } catch {
      // Not JSON (a binary frame included): reported below.
    }
    if (typeof event !== "object" || event === null || Array.isArray(event)) {
      return this.#emit("error", {
        code: "protocol",
        message: "The server sent a frame that is not a JSON object",
      });
    }
    if (event.id !== undefined) {
      // An answer: to a request still waiting, or to one given up since
      // (the topic was unsubscribed before its `subscribed`).
      const request = this.#requests.get(event.id);
      this.#requests.delete(event.id);
      return request?.answer(event);
    }
    const sub = this.#topics.get(event.topic);
    switch (event.t) {
      case "connected":
        return this.#onConnected(event.client);
      case "pub":
        if (sub === undefined) return; // unsubscribed meanwhile
        if (typeof event.offset === "number") {
          sub.position = { offset: event.offset, epoch: event.epoch };
        }
        return this.#emit("publication", {
          topic: event.topic,
          data: event.binary ? fromBase64(event.data) : event.data,
          offset: event.offset,
          epoch: event.epoch,
        });
      case "gap":
        if (sub === undefined) return;
        sub.position = event.position;
        return this.#emit("gap", {
          topic: event.topic,
          position: event.position,
        });
      case "unsubscribed":
        if (sub === undefined) return;
        this.#topics.delete(event.topic);
        return this.#emit("unsubscribed", {
          topic: event.topic,
          reason: event.reason ?? "",
        });
      case "error":
        return this.#emit("error", {
          code: event.code,
          message: event.message,
        });
    }
    // Other events (a later version's) are ignored.
  }

  /** @param {string} client */
  #onConnected(client) {
    // Not after the connect timeout began closing this socket.
    if (this.#state !== "connecting" || this.#ws?.readyState !== OPEN) return;
    clearTimeout(this.#connectTimer);
    this.#state = "connected";
    this.#client = client;
    const reconnected = this.#everConnected;
    this.#everConnected = true;
    this.#stableTimer = setTimeout(() => {
      this.#backoff = 0;
      this.#attempts = 0;
    }, this.#minUptime);
    // The server runs a socket's commands in order: the publications queued
    // while offline reach their topics after the resubscriptions.
    for (const [topic, sub] of this.#topics) this.#subscribe(topic, sub);
    for (const { command, ...request } of this.#queue.splice(0)) {
      this.#send(command, request);
    }
    this.#emit("connected", { reconnected, client });
  }

  /**
   * @param {string} topic
   * @param {Subscription} sub
   * @param {any} event
   */
  #onSubscribed(topic, sub, event) {
    // Recovered: the publications after our position follow, and move it.
    // Not: we start again from the topic's latest position.
    if (!event.recovered) sub.position = event.position;
    this.#emit("subscribed", {
      topic,
      recovered: event.recovered,
      recovering: sub.recovering,
      position: event.position,
    });
  }

  /**
   * @param {number} code
   * @param {string} reason
   */
  #onClose(code, reason) {
    this.#ws = undefined;
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#stableTimer);
    // Deno reports a failed handshake as code 0; the standard says 1006.
    code ||= 1006;
    const closed = this.#state === "closed";
    const lost = closed
      ? new LiveError("closed", "The client was closed before the answer")
      : new LiveError(
        "disconnected",
        "The connection closed before the answer",
      );
    for (const request of this.#requests.values()) request.lost(lost);
    this.#requests.clear();
    const willRetry = !closed && code !== POLICY_VIOLATION &&
      !this.#stopCodes.includes(code) && this.#attempts < this.#maxAttempts;
    let delay = 0;
    if (willRetry) {
      if (SLOW_DOWN_CODES.includes(code)) this.#backoff++;
      // Full jitter: clients dropped together spread out over the wait.
      const ceiling = Math.min(
        this.#maxDelay,
        this.#initialDelay * this.#multiplier ** this.#backoff,
      );
      delay = Math.floor(this.#random() * ceiling);
      this.#backoff++;
      this.#state = "disconnected";
      this.#retryTimer = setTimeout(() => this.#connect(), delay);
    } else {
      this.#state = "closed";
      this.#failQueue();
    }
    this.#emit("disconnected", { code, reason, willRetry, delay });
  }

  #failQueue() {
    const error = new LiveError(
      "closed",
      "The client closed before it could send",
    );
    for (const { lost } of this.#queue.splice(0)) lost(error);
  }

  /**
   * @param {string} type
   * @param {unknown} detail
   */
  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/**
 * @param {string} name
 * @param {unknown} value
 * @param {number} fallback
 * @param {number} [min]
 */
function count(name, value, fallback, min = 0) {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !(value >= min)) {
    throw new RangeError(`The ${name} option must be a number >= ${min}`);
  }
  return value;
}

/** @param {unknown} topic */
function checkTopic(topic) {
  if (typeof topic !== "string" || topic === "") {
    throw new TypeError("A topic must be a non-empty string");
  }
}

/** @param {any} event */
function errorOf(event) {
  return new LiveError(event.code, event.message);
}

/** @param {unknown} data */
function bytesOf(data) {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  throw new TypeError("Data must be a string, an ArrayBuffer or a view of one");
}

// Uint8Array's base64 methods are recent (Chromium 140, Firefox 133,
// Safari 18.2): older browsers go through a binary string.

/** @param {Uint8Array} bytes */
function toBase64(bytes) {
  // @ts-ignore: not in every lib yet
  if (bytes.toBase64) return bytes.toBase64();
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

/** @param {string} text */
function fromBase64(text) {
  // @ts-ignore: not in every lib yet
  if (Uint8Array.fromBase64) return Uint8Array.fromBase64(text);
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}
