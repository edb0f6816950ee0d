// UTF-8 text checked as it arrives, in pieces cut anywhere, and decoded in
// large pieces (RFC 6455 §8.1, RFC 3629): a message in a million 1-byte
// fragments costs a few operations a byte, not a decoder call and a string
// per fragment.

import { isAscii, isUtf8 } from "node:buffer";
import { copyInto } from "./_bytes.ts";

/**
 * Pieces up to this many bytes are checked in JavaScript; longer ones by
 * `isUtf8` (native and vectorized), whose call costs more than a few bytes'
 * worth of the loop.
 */
const NATIVE_MIN = 256;
/**
 * Small pieces are gathered up to this many bytes before they are decoded:
 * few `TextDecoder` calls, each fast (one call over megabytes is slower).
 * Also the most `decodeUtf8` decodes per call.
 */
const STAGE_MAX = 64 * 1024;
/** Pieces from this size on are decoded where they are, not gathered. */
const DECODE_MIN = 4 * 1024;
/** The least a stage is made; one this small is kept for the next text. */
const STAGE_MIN = 1024;
const EMPTY = new Uint8Array(0);
/**
 * For text checked already (the check is done, and faster, here). Without
 * `ignoreBOM` a leading U+FEFF would be dropped, and decoding is slower.
 */
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
/** Checks and decodes non-ASCII text in one pass: faster than both apart. */
const fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Checks UTF-8 in pieces cut anywhere, a character's bytes included, and
 * fails at the first byte that cannot belong to valid UTF-8: an impossible
 * byte, a continuation byte where none may be, or one outside the range the
 * lead byte allows (overlong forms, surrogates, code points above U+10FFFF),
 * as the WHATWG decoder does with `fatal`.
 */
export class Utf8Validator {
  /** Continuation bytes still expected for the character in progress. */
  #need = 0;
  /** The range the next continuation byte must be in. */
  #lower = 0x80;
  #upper = 0xbf;

  /** Whether the bytes so far end on a character boundary. */
  get complete(): boolean {
    return this.#need === 0;
  }

  /** Forgets what came before, for a new text. */
  reset(): void {
    this.#need = 0;
    this.#lower = 0x80;
    this.#upper = 0xbf;
  }

  /**
   * Checks the next bytes; false at the first one that makes the text
   * invalid (the validator is then to be reset before further use).
   */
  check(bytes: Uint8Array): boolean {
    const length = bytes.length;
    if (length < NATIVE_MIN) return this.scan(bytes, 0, length);
    // Finish the character in progress in JavaScript, hand whole characters
    // to `isUtf8`, and keep a character cut off at the end for the next
    // piece (checking the bytes of it that are here).
    let start = 0;
    while (this.#need !== 0 && start < length) {
      if (!this.scan(bytes, start, start + 1)) return false;
      start++;
    }
    const end = lastBoundary(bytes, start);
    if (end > start && !isUtf8(bytes.subarray(start, end))) return false;
    return this.scan(bytes, end, length);
  }

  /**
   * Checks `bytes[start]` to `bytes[end - 1]` one byte at a time; false
   * at the first one that makes the text invalid.
   */
  scan(bytes: Uint8Array, start: number, end: number): boolean {
    let need = this.#need;
    let lower = this.#lower;
    let upper = this.#upper;
    for (let i = start; i < end; i++) {
      const byte = bytes[i];
      if (need === 0) {
        if (byte < 0x80) continue;
        if (byte < 0xc2) return false; // a continuation byte, or overlong
        if (byte < 0xe0) {
          need = 1;
        } else if (byte < 0xf0) {
          need = 2;
          if (byte === 0xe0) lower = 0xa0; // overlong below U+0800
          else if (byte === 0xed) upper = 0x9f; // surrogates
        } else if (byte < 0xf5) {
          need = 3;
          if (byte === 0xf0) lower = 0x90; // overlong below U+10000
          else if (byte === 0xf4) upper = 0x8f; // above U+10FFFF
        } else {
          return false;
        }
      } else {
        if (byte < lower || byte > upper) return false;
        lower = 0x80;
        upper = 0xbf;
        need--;
      }
    }
    this.#need = need;
    this.#lower = lower;
    this.#upper = upper;
    return true;
  }
}

/**
 * Where the last character that may be cut off at the end of `bytes`
 * starts (at or after `start`), or `bytes.length` when none is: a lead
 * byte among the last three bytes whose character needs more than follow.
 */
function lastBoundary(bytes: Uint8Array, start: number): number {
  const length = bytes.length;
  for (let i = length - 1; i >= start && i >= length - 3; i--) {
    const byte = bytes[i];
    if (byte < 0x80) return length;
    if (byte >= 0xc0) {
      const size = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : 2;
      return length - i < size ? i : length;
    }
  }
  return length;
}

/**
 * Decodes a whole text: null if it is not valid UTF-8. Checking first and
 * then decoding without `fatal` is faster than a `fatal` decoder, several
 * times for long ASCII text.
 */
export function decodeUtf8(bytes: Uint8Array): string | null {
  if (!isUtf8(bytes)) return null;
  if (bytes.length <= STAGE_MAX) return decoder.decode(bytes);
  // One call over megabytes of non-ASCII text is several times slower than
  // the same bytes in 64 KiB calls.
  let text = "";
  for (let at = 0; at < bytes.length; at += STAGE_MAX) {
    text += decoder.decode(bytes.subarray(at, at + STAGE_MAX), {
      stream: true,
    });
  }
  return text + decoder.decode();
}

/**
 * A text that arrives as UTF-8 in pieces cut anywhere: each piece is
 * checked as it arrives (so that an invalid byte fails at once, RFC 6455
 * §8.1), pieces under 4 KiB are gathered and decoded together, 64 KiB at a
 * time, larger ones decoded where they are (all ASCII at once, other text
 * checked and decoded in one pass). The cost is a few operations a byte
 * however the text is cut, and the string is built from few pieces.
 */
export class Utf8Text {
  #validator = new Utf8Validator();
  #decoder: TextDecoder | null = null;
  /** Bytes checked and not decoded yet. */
  #stage: Uint8Array = EMPTY;
  #staged = 0;
  #text = "";

  /**
   * Takes the next bytes (copying what it keeps); false at the first byte
   * that makes the text invalid, after which the text is forgotten.
   */
  push(bytes: Uint8Array): boolean {
    const length = bytes.length;
    if (length >= DECODE_MIN) return this.#pushLarge(bytes);
    if (!this.#validator.check(bytes)) return this.#fail();
    if (this.#staged + length > this.#stage.length) {
      if (this.#stage.length === STAGE_MAX) {
        this.#flush();
      } else {
        // Grown by a factor, so that a long text in tiny pieces is copied
        // few times, and small for a short text in a few pieces.
        const stage = new Uint8Array(
          Math.min(STAGE_MAX, Math.max(STAGE_MIN, (this.#staged + length) * 4)),
        );
        stage.set(this.#stage.subarray(0, this.#staged));
        this.#stage = stage;
      }
    }
    copyInto(this.#stage, this.#staged, bytes);
    this.#staged += length;
    return true;
  }

  /**
   * Ends the text and returns it; null when it ends inside a character.
   * Either way the next push starts a new text.
   */
  end(): string | null {
    if (!this.#validator.complete) {
      this.reset();
      return null;
    }
    this.#flush();
    const text = this.#text;
    this.#text = "";
    // A large stage served a long text; a connection does not keep it.
    if (this.#stage.length > STAGE_MIN) this.#stage = EMPTY;
    return text;
  }

  /** Forgets the text in progress. */
  reset(): void {
    this.#validator.reset();
    this.#decoder = null;
    this.#stage = EMPTY;
    this.#staged = 0;
    this.#text = "";
  }

  /**
   * A large piece is decoded where it is, not copied: the end of the
   * character in progress and a character cut off at its end go through
   * the streaming decoder (checked here); the whole characters between
   * through one call that checks them too.
   */
  #pushLarge(bytes: Uint8Array): boolean {
    this.#flush();
    const validator = this.#validator;
    const length = bytes.length;
    let start = 0;
    while (!validator.complete && start < length) {
      if (!validator.scan(bytes, start, start + 1)) return this.#fail();
      start++;
    }
    if (start > 0) this.#text += this.#decode(bytes.subarray(0, start));
    const end = lastBoundary(bytes, start);
    if (end > start) {
      const middle = bytes.subarray(start, end);
      if (isAscii(middle)) {
        this.#text += decoder.decode(middle);
      } else {
        try {
          this.#text += fatal.decode(middle);
        } catch {
          return this.#fail();
        }
      }
    }
    if (end < length) {
      if (!validator.scan(bytes, end, length)) return this.#fail();
      this.#text += this.#decode(bytes.subarray(end));
    }
    return true;
  }

  #fail(): false {
    this.reset();
    return false;
  }

  #flush(): void {
    if (this.#staged === 0) return;
    this.#text += this.#decode(this.#stage.subarray(0, this.#staged));
    this.#staged = 0;
  }

  /** Decodes checked bytes; a character cut off at their end waits. */
  #decode(bytes: Uint8Array): string {
    this.#decoder ??= new TextDecoder("utf-8", { ignoreBOM: true });
    return this.#decoder.decode(bytes, { stream: true });
  }
}
