// The one way to the internals of a socket, of its streams and of a topic
// hub: a private field put on each when it is made, which nothing public
// shows. It lives in pubsub/, the lowest layer that uses it (the hub's own
// internals); the socket layer above uses it too.

/**
 * A base class whose constructor returns the object it is given instead of
 * a new one: a class that extends it adds its private fields to that
 * object (a class's "return override"). So one private field serves the
 * socket and its streams alike, though they extend different classes.
 */
class Target {
  constructor(target: object) {
    return target;
  }
}

/** Holds the private field; made only by `setInternals`. */
class Internals extends Target {
  #internals: unknown;

  constructor(target: object, internals: unknown) {
    super(target);
    this.#internals = internals;
  }

  static of(target: object): unknown {
    return #internals in target ? target.#internals : undefined;
  }
}

/**
 * Gives `target` its internals: what its engine, server, hub or a direct
 * pipe drive, and its public members do not show. Once per object.
 *
 * @example
 * ```ts ignore
 * setInternals(this, core); // in the socket's constructor
 * ```
 */
export function setInternals(target: object, internals: unknown): void {
  new Internals(target, internals);
}

/**
 * The internals given to `target`, or undefined for any other object (a
 * stream that is not a socket's, say).
 *
 * @example
 * ```ts ignore
 * const core = internalsOf(socket) as SocketCore;
 * ```
 */
export function internalsOf(target: object): unknown {
  return Internals.of(target);
}
