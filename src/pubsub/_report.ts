// Telling an application's `onError` (or another callback) of a fault
// without ever throwing: a callback that throws too is heard through
// `console.error`, with both. It lives in pubsub/, the lowest layer that
// uses it (the hub and the bus); the server and the reconnecting client use
// it too.

/**
 * Calls `callback` with `value`; what it throws goes to the console.
 *
 * @example
 * ```ts ignore
 * report(this.#onError, error);
 * report(this.#onEvent, event, "onEvent");
 * ```
 */
export function report<T>(
  callback: (value: T) => void,
  value: T,
  name = "onError",
): void {
  try {
    callback(value);
  } catch (thrown) {
    console.error(`${name} threw`, thrown, "while reporting", value);
  }
}
