// Telling an application's `onError` of a fault without ever throwing: a
// handler that throws too is heard through `console.error`, with both errors.
// It lives in pubsub/, the lowest layer that uses it (the hub and the bus);
// the server and the reconnecting client use it too.

/** Calls `onError` with `error`; what `onError` throws goes to the console. */
export function report(
  onError: (error: unknown) => void,
  error: unknown,
): void {
  try {
    onError(error);
  } catch (thrown) {
    console.error("onError threw", thrown, "while reporting", error);
  }
}
