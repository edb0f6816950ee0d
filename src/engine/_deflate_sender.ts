// Keeps outgoing frames in order when some messages are compressed, which
// node:zlib does asynchronously (permessage-deflate, RFC 7692).

import type { DeflateCodec } from "./_deflate_codec.ts";
import { Opcode } from "../protocol/constants.ts";
import type { Message } from "../protocol/message_assembler.ts";
import type { Protocol } from "../protocol/_protocol.ts";
import { headerSize } from "../protocol/frame.ts";
import { byteLength } from "../protocol/_bytes.ts";

const encoder = new TextEncoder();

/**
 * The outbound half of permessage-deflate for one connection. Messages from
 * the threshold up are compressed; once one is compressing, every later
 * message, shared frame and our close frame waits in one promise chain
 * behind it, so that nothing overtakes it on the wire. Pings and pongs go
 * straight to the protocol: they may go between messages. With nothing
 * compressing, small messages go out at once, synchronously.
 */
export class DeflateSender {
  #protocol: Protocol;
  #codec: DeflateCodec;
  #fail: () => void;
  /** Steps queued or running in the chain. */
  #pending = 0;
  /** Payload bytes of the messages waiting in the chain. */
  #pendingBytes = 0;
  /** The end of the chain; made when first needed. */
  #tail: Promise<void> | undefined;

  /**
   * @param protocol Where frames go once it is their turn.
   * @param codec The connection's compressor.
   * @param fail Fails the connection (1011) when compressing fails.
   */
  constructor(protocol: Protocol, codec: DeflateCodec, fail: () => void) {
    this.#protocol = protocol;
    this.#codec = codec;
    this.#fail = fail;
  }

  /** Payload bytes waiting to be compressed or behind a compressing message. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** Resolves once everything in the chain has been handed to the protocol. */
  settled(): Promise<void> | undefined {
    return this.#pending === 0 ? undefined : this.#tail;
  }

  /**
   * Sends a data message, compressed from the threshold up. Returns the
   * bytes queued (or, while it waits in the chain, the size of its frame
   * uncompressed), 0 once the protocol is no longer open.
   */
  send(message: Message): number {
    const protocol = this.#protocol;
    if (protocol.state !== "open") return 0;
    const size = byteLength(message);
    if (size < this.#codec.threshold) {
      // Uncompressed: the protocol's own path (short text with no copy).
      if (this.#pending === 0) return protocol.send(message);
      this.#chain(size, () => {
        protocol.send(message);
      });
    } else {
      const text = typeof message === "string";
      const bytes = text ? encoder.encode(message) : message;
      this.#chain(size, async () => {
        const payload = await this.#codec.compress(bytes);
        protocol.sendFrame(text ? Opcode.Text : Opcode.Binary, payload, true);
      });
    }
    return headerSize(size, false) + size;
  }

  /** Queues a frame encoded elsewhere, in order after what waits. */
  sendEncoded(frame: Uint8Array): number {
    const protocol = this.#protocol;
    if (protocol.state !== "open") return 0;
    if (this.#pending === 0) return protocol.sendEncoded(frame);
    this.#chain(frame.length, () => {
      protocol.sendEncoded(frame);
    });
    return frame.length;
  }

  /** Starts the closing handshake once the messages before it are sent. */
  close(code: number | undefined, reason: string): void {
    if (this.#pending === 0) this.#protocol.close(code, reason);
    else this.#chain(0, () => this.#protocol.close(code, reason));
  }

  /** Appends a step to the chain; steps are skipped once closed. */
  #chain(bytes: number, step: () => void | Promise<void>): void {
    this.#pending++;
    this.#pendingBytes += bytes;
    const run = async () => {
      try {
        if (this.#protocol.state !== "closed") await step();
      } catch {
        // Compressing failed: an internal error. A compressor closed by the
        // end of the connection rejects too, and is ignored then.
        if (this.#protocol.state !== "closed") this.#fail();
      } finally {
        this.#pending--;
        this.#pendingBytes -= bytes;
      }
    };
    this.#tail = (this.#tail ?? Promise.resolve()).then(run);
  }
}
