// The generic `Sec-WebSocket-Extensions` grammar (RFC 6455 §9.1), shared by
// every extension's negotiation.

/** One element of a `Sec-WebSocket-Extensions` list (RFC 6455 §9.1). */
export interface Extension {
  /** The extension token, lower-cased. */
  name: string;
  /** The parameters in order: names lower-cased, `true` for no value. */
  params: [string, string | true][];
}

/** RFC 9110 §5.6.2 `tchar`, what tokens are made of. */
const TOKEN_CHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]$/;

/**
 * Parses a `Sec-WebSocket-Extensions` value (repeated headers joined with
 * commas, as `Headers.get` does) into its elements (RFC 6455 §9.1:
 * `extension-token *( ";" extension-param )`, a parameter value being a
 * token or a quoted-string). A malformed element gives `null` in its place,
 * so that it can be declined without losing the others.
 */
export function parseExtensions(value: string): (Extension | null)[] {
  const out: (Extension | null)[] = [];
  const length = value.length;
  let pos = 0;
  const skipSpace = () => {
    while (pos < length && (value[pos] === " " || value[pos] === "\t")) pos++;
  };
  const token = (): string => {
    const start = pos;
    while (pos < length && TOKEN_CHAR.test(value[pos])) pos++;
    return value.slice(start, pos);
  };
  const quoted = (): string | null => {
    let text = "";
    for (pos++; pos < length; pos++) {
      const char = value[pos];
      if (char === '"') {
        pos++;
        return text;
      }
      if (char === "\\") pos++;
      if (pos < length) text += value[pos];
    }
    return null;
  };
  const element = (): Extension | null => {
    const name = token();
    if (name === "") return null;
    const params: [string, string | true][] = [];
    skipSpace();
    while (value[pos] === ";") {
      pos++;
      skipSpace();
      const key = token();
      if (key === "") return null;
      skipSpace();
      let param: string | true = true;
      if (value[pos] === "=") {
        pos++;
        skipSpace();
        const text = value[pos] === '"' ? quoted() : token();
        if (text === null || text === "") return null;
        param = text;
        skipSpace();
      }
      params.push([key.toLowerCase(), param]);
    }
    if (pos < length && value[pos] !== ",") return null;
    return { name: name.toLowerCase(), params };
  };
  // Moves past a malformed element: to the next comma outside quotes.
  const skipElement = () => {
    let inQuotes = false;
    for (; pos < length; pos++) {
      const char = value[pos];
      if (inQuotes) {
        if (char === "\\") pos++;
        else if (char === '"') inQuotes = false;
      } else if (char === '"') {
        inQuotes = true;
      } else if (char === ",") {
        break;
      }
    }
  };
  while (pos < length) {
    skipSpace();
    // Empty list elements are allowed and ignored (RFC 9110 §5.6.1).
    if (value[pos] === ",") {
      pos++;
      continue;
    }
    if (pos >= length) break;
    const parsed = element();
    if (parsed === null) skipElement();
    out.push(parsed);
    // Past the comma that ends the element.
    pos++;
  }
  return out;
}
