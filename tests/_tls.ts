/**
 * Makes a private CA and a certificate for 127.0.0.1 and localhost signed by
 * it, with openssl, for wss: tests; the files are removed before returning.
 */

import { runCommand } from "./_util.ts";

export async function makeCertificates(): Promise<
  { ca: string; cert: string; key: string }
> {
  const dir = await Deno.makeTempDir();
  const run = async (...args: string[]) => {
    const { code, stderr } = await runCommand("openssl", {
      args,
      cwd: dir,
      stdout: "null",
      stderr: "piped",
    });
    if (code !== 0) {
      throw new Error(
        `openssl ${args[0]} failed: ${new TextDecoder().decode(stderr)}`,
      );
    }
  };
  try {
    await run(
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "1",
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-subj",
      "/CN=scope-ws test CA",
    );
    await run(
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "key.pem",
      "-out",
      "leaf.csr",
      "-subj",
      "/CN=localhost",
    );
    await Deno.writeTextFile(
      `${dir}/ext.cnf`,
      "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    );
    await run(
      "x509",
      "-req",
      "-in",
      "leaf.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "1",
      "-out",
      "cert.pem",
      "-extfile",
      "ext.cnf",
    );
    const read = (name: string) => Deno.readTextFile(`${dir}/${name}`);
    return {
      ca: await read("ca.pem"),
      cert: await read("cert.pem"),
      key: await read("key.pem"),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
