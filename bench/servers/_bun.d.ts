/**
 * The little of Bun's API that bench/servers/bun_*.ts use, so that Deno
 * type-checks them too (Bun itself ignores this file).
 */
interface BunServerWebSocket<T> {
  data: T;
  send(message: string | Uint8Array): number;
  subscribe(topic: string): void;
}

interface BunServer<T> {
  port: number;
  upgrade(request: Request, options?: { data?: T }): boolean;
  publish(topic: string, message: string | Uint8Array): number;
}

interface BunServeOptions<T> {
  port: number;
  hostname: string;
  fetch(
    request: Request,
    server: BunServer<T>,
  ): Response | undefined | Promise<Response | undefined>;
  websocket: {
    open?(ws: BunServerWebSocket<T>): void;
    message(ws: BunServerWebSocket<T>, message: string | Uint8Array): void;
  };
}

declare const Bun: {
  serve<T>(options: BunServeOptions<T>): BunServer<T>;
  gc(force: boolean): void;
};
