// What every bus adapter shares: the node's origin id, the numbering of its
// publications, gap counting on what arrives, the counters and the reports.

import { report } from "./_report.ts";
import type { Envelope } from "./_envelope.ts";
import type { StreamPosition } from "./history.ts";
import type { PubSubEvent, PubSubEventKind } from "./pubsub_event.ts";
import type { PubSubDeliver, PubSubStats } from "./topic_hub.ts";

const MAX_SEQUENCE = 0xffff_ffff;
/**
 * The most topics whose publication count a node keeps, and the most
 * (topic, origin) pairs whose last sequence it keeps. Past either, the
 * node forgets them all at once: a publisher then starts a new epoch, and a
 * receiver takes the next message of each pair as its new baseline. This
 * bounds the memory that many short-lived topics or origins would take.
 */
export const MAX_TRACKED = 65_536;
/**
 * The largest jump in a publisher's numbering counted as lost messages. A
 * number further ahead, or one that goes back, cannot be a loss: it is a
 * forged or corrupt message (or losses beyond counting), and it becomes the
 * new baseline rather than the count of billions of gaps, or a wall that
 * refuses every later message of that publisher.
 */
export const MAX_GAP = 1 << 20;
/** Reports of one kind (a gap, a malformed message) go out once a second at most. */
const REPORT_INTERVAL = 1000;

/** The kinds of event that are good news. */
const RECOVERIES = new Set<PubSubEventKind>([
  "reconnected",
  "publish-recovered",
]);

/** The callbacks an adapter's options give its node. */
export interface BusCallbacks {
  /** Told each event as an `Error`, as it always was (not `reconnected`). */
  onError?: (error: unknown) => void;
  /** Told each event. */
  onEvent?: (event: PubSubEvent) => void;
}

/** What {@linkcode BusNode.tell} takes beside an event's kind and message. */
export interface Telling {
  /** The error behind the event: the event's `cause`. */
  cause?: unknown;
  /**
   * What `onError` gets: by default an `Error` with the message and the
   * cause; an error of the application's or the bus's own is passed as is.
   */
  error?: unknown;
  /**
   * Reported once a second at most: what the held-back reports are, for
   * the next one to say how many there were.
   */
  limited?: string;
}

/** Where the last message of one origin on one topic stood. */
interface Position {
  epoch: number;
  sequence: number;
}

/**
 * A node on the bus: numbers its publications per topic and checks the
 * numbers of what other nodes publish.
 */
export class BusNode {
  /** The node's origin id: random, so that a restarted process is new. */
  readonly id: string;
  /** The counters, updated in place; adapters hand out copies. */
  readonly stats: PubSubStats = {
    published: 0,
    failed: 0,
    delivered: 0,
    gaps: 0,
    malformed: 0,
    resets: 0,
    reconnects: 0,
  };
  #onError: ((error: unknown) => void) | undefined;
  #onEvent: ((event: PubSubEvent) => void) | undefined;
  /** Put before each line the default reporter logs. */
  #label: string;
  /** Where messages from other nodes go, once the hub has opened the node. */
  #deliver: PubSubDeliver | undefined;
  #epoch = 0;
  /** Topic → the sequence of the node's last publication to it. */
  #sent = new Map<string, number>();
  /** Topic → origin → where its last message stood. */
  #seen = new Map<string, Map<string, Position>>();
  #seenCount = 0;
  /** Per report kind: when it last went out and how many were held back. */
  #reports = new Map<string, { at: number; held: number }>();

  constructor(callbacks: BusCallbacks, label: string) {
    this.id = crypto.getRandomValues(new Uint8Array(12)).toBase64({
      alphabet: "base64url",
      omitPadding: true,
    });
    for (const name of ["onError", "onEvent"] as const) {
      if (
        callbacks[name] !== undefined && typeof callbacks[name] !== "function"
      ) {
        throw new TypeError(`The ${name} option must be a function`);
      }
    }
    this.#onError = callbacks.onError;
    this.#onEvent = callbacks.onEvent;
    this.#label = label;
  }

  /** Takes the hub's `deliver`: one hub per adapter. */
  open(deliver: PubSubDeliver): void {
    if (this.#deliver !== undefined) {
      throw new TypeError(
        "This adapter is already open: give one hub to the servers that share it",
      );
    }
    this.#deliver = deliver;
  }

  /**
   * Hands a message from the bus to the hub, if it is due (see `accept`)
   * and the hub has opened the node; what `deliver` throws is reported.
   */
  receive(envelope: Envelope): void {
    if (this.#deliver === undefined || !this.accept(envelope)) return;
    this.deliver(envelope);
  }

  /**
   * Hands a message to the hub as it is, with its position on a topic
   * whose history the bus keeps (ordered by it, not by its sequence), and
   * the tag of this node's own.
   */
  deliver(envelope: Envelope, position?: StreamPosition, tag?: unknown): void {
    const deliver = this.#deliver;
    if (deliver === undefined) return;
    this.stats.delivered++;
    try {
      deliver(envelope.topic, envelope.message, position, tag);
    } catch (error) {
      this.report(error);
    }
  }

  /** The epoch and sequence of the node's next publication to `topic`. */
  next(topic: string): { epoch: number; sequence: number } {
    let sequence = (this.#sent.get(topic) ?? 0) + 1;
    if (
      sequence > MAX_SEQUENCE ||
      (sequence === 1 && this.#sent.size >= MAX_TRACKED)
    ) {
      // Every topic starts again from 1 in a new epoch, which receivers
      // tell from a gap.
      this.#sent.clear();
      this.#epoch = (this.#epoch + 1) % (MAX_SEQUENCE + 1);
      sequence = 1;
    }
    this.#sent.set(topic, sequence);
    return { epoch: this.#epoch, sequence };
  }

  /**
   * Checks the number of a message from the bus, for a topic subscribed
   * here: false for the node's own messages. A message after missing ones
   * counts the missing as gaps; one whose number goes back or jumps more
   * than `MAX_GAP` ahead is counted as a reset and starts a new baseline.
   * Either way it is taken.
   */
  accept(envelope: Envelope): boolean {
    const { origin, topic, epoch, sequence } = envelope;
    if (origin === this.id) return false;
    let origins = this.#seen.get(topic);
    const last = origins?.get(origin);
    if (last === undefined) {
      // The first message of this origin since the topic was subscribed
      // here: nothing before it was due.
      if (this.#seenCount >= MAX_TRACKED) {
        this.#forgetAll();
        origins = undefined;
      }
      if (origins === undefined) {
        origins = new Map();
        this.#seen.set(topic, origins);
      }
      origins.set(origin, { epoch, sequence });
      this.#seenCount++;
      return true;
    }
    // A new epoch counts again from 1.
    const expected = last.epoch === epoch ? last.sequence + 1 : 1;
    if (sequence < expected || sequence - expected > MAX_GAP) {
      this.stats.resets++;
      this.tell(
        "reset",
        `The numbering of node ${origin} on topic "${topic}" went from ${last.epoch}:${last.sequence} to ${epoch}:${sequence} (a forged or corrupt message, or losses beyond counting): counting starts again from it`,
        { limited: "numbering resets" },
      );
    } else if (sequence > expected) {
      this.#gap(sequence - expected, origin, topic);
    }
    last.epoch = epoch;
    last.sequence = sequence;
    return true;
  }

  /** The topic is no longer subscribed here: its positions go. */
  forget(topic: string): void {
    const origins = this.#seen.get(topic);
    if (origins === undefined) return;
    this.#seenCount -= origins.size;
    this.#seen.delete(topic);
  }

  /** Counts and reports a bus message that is not one of ours. */
  malformed(error: unknown): void {
    this.stats.malformed++;
    this.tell("malformed", messageOf(error), {
      error,
      limited: "malformed bus messages",
    });
  }

  /** Reports an error of the application's or of the bus's own. */
  report(error: unknown): void {
    this.tell("error", messageOf(error), { cause: error, error });
  }

  /**
   * Tells `onEvent` and `onError` of an event (a callback that throws is
   * heard through `console.error`), or, when the application gave neither,
   * logs it as one line. With `limited`, one event of a kind goes out a
   * second at most, so that a flood of bad messages cannot flood the log;
   * the next says how many were held back (the counters have them all).
   */
  tell(
    kind: PubSubEventKind,
    message: string,
    { cause, error, limited }: Telling = {},
  ): void {
    if (limited !== undefined) {
      const now = performance.now();
      const state = this.#reports.get(limited);
      if (state !== undefined && now - state.at < REPORT_INTERVAL) {
        state.held++;
        return;
      }
      const held = state?.held ?? 0;
      this.#reports.set(limited, { at: now, held: 0 });
      if (held > 0) {
        error = new Error(
          `${message} (and ${held} more ${limited} since the last report, counted but not reported)`,
          { cause: error ?? errorOf(message, cause) },
        );
        message = (error as Error).message;
      }
    }
    const event: PubSubEvent = {
      kind,
      recovery: RECOVERIES.has(kind),
      message,
    };
    if (cause !== undefined) event.cause = cause;
    const onEvent = this.#onEvent;
    const onError = this.#onError;
    if (onEvent !== undefined) report(onEvent, event, "onEvent");
    // `onError` hears what it always heard: every event but a reconnection.
    if (onError !== undefined && kind !== "reconnected") {
      report(onError, error ?? errorOf(message, cause));
    }
    if (onEvent === undefined && onError === undefined) {
      const line = `${this.#label}: ${oneLine(message)}${
        cause === undefined || cause === error
          ? ""
          : ` (${oneLine(messageOf(cause))})`
      }`;
      if (event.recovery) console.info(line);
      else console.error(line);
    }
  }

  #gap(missing: number, origin: string, topic: string): void {
    this.stats.gaps += missing;
    this.tell(
      "gap",
      `${missing} message(s) from node ${origin} on topic "${topic}" were lost on the bus`,
      { limited: "losses on the bus" },
    );
  }

  #forgetAll(): void {
    this.#seen.clear();
    this.#seenCount = 0;
  }
}

/** An error's message, or what else was thrown as text. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The `Error` that `onError` gets for an event. */
function errorOf(message: string, cause: unknown): Error {
  return cause === undefined
    ? new Error(message)
    : new Error(message, { cause });
}

/** A message on one line: what a log line may not break. */
function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, " ").trim();
}
