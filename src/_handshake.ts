import { HttpError, type RequestHead } from "./_http.ts";

/** The GUID that RFC 6455 §1.3 appends to the key. */
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const encoder = new TextEncoder();

/** `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)) (§4.2.2). */
export async function computeAccept(key: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-1",
    encoder.encode(key + GUID),
  );
  return new Uint8Array(digest).toBase64();
}

/** The comma-separated tokens of a header, trimmed and lower-cased. */
export function headerTokens(value: string | null): string[] {
  if (!value) return [];
  return value.split(",").map((token) => token.trim().toLowerCase())
    .filter((token) => token !== "");
}

/** Whether the request asks for a WebSocket upgrade at all. */
export function isUpgradeRequest(head: RequestHead): boolean {
  return headerTokens(head.headers.get("upgrade")).includes("websocket");
}

/**
 * Checks an upgrade request against RFC 6455 §4.2.1 and returns its key;
 * throws an `HttpError` with the status to answer.
 */
export function validateUpgrade(head: RequestHead): string {
  if (head.version !== "HTTP/1.1") {
    throw new HttpError(
      head.version.startsWith("HTTP/1.") ? 400 : 505,
      "WebSocket upgrades need HTTP/1.1",
    );
  }
  if (head.method !== "GET") {
    throw new HttpError(405, "WebSocket upgrades must use GET", {
      allow: "GET",
    });
  }
  const headers = head.headers;
  if (!headers.has("host")) throw new HttpError(400, "Missing Host header");
  if (!headerTokens(headers.get("connection")).includes("upgrade")) {
    throw new HttpError(400, "Connection header must include upgrade");
  }
  const version = headers.get("sec-websocket-version");
  if (version === null) {
    throw new HttpError(400, "Missing Sec-WebSocket-Version header");
  }
  if (version.trim() !== "13") {
    throw new HttpError(426, "Unsupported WebSocket version", {
      "sec-websocket-version": "13",
    });
  }
  const key = headers.get("sec-websocket-key")?.trim() ?? "";
  let decoded: Uint8Array | undefined;
  try {
    decoded = /^[A-Za-z0-9+/]{22}==$/.test(key)
      ? Uint8Array.fromBase64(key)
      : undefined;
  } catch {
    decoded = undefined;
  }
  if (decoded?.length !== 16) {
    throw new HttpError(400, "Invalid Sec-WebSocket-Key header");
  }
  return key;
}

/** A fresh `Sec-WebSocket-Key`: 16 random bytes, base64-encoded (§4.1). */
export function generateKey(): string {
  return crypto.getRandomValues(new Uint8Array(16)).toBase64();
}
