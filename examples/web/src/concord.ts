// Clients for Concord from a browser: one transport per protocol, the
// MACP runtime service and Concord's admin service over it, and the bearer
// token each call carries.
import { create, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";

import { AdminService } from "./gen/concord/admin/v1/admin_pb";
import { MACPRuntimeService } from "./gen/macp/v1/core_pb";
import type { Ack, EnvelopeSchema } from "./gen/macp/v1/envelope_pb";

/** The wire protocols a browser can speak to Concord. */
export type Protocol = "connect-json" | "connect-binary" | "grpc-web";

export const protocols: Record<Protocol, string> = {
  "connect-json": "Connect (JSON)",
  "connect-binary": "Connect (binary)",
  "grpc-web": "gRPC-web",
};

export function isProtocol(s: string): s is Protocol {
  return s in protocols;
}

/** Concord's two services over one transport. */
export interface Concord {
  readonly protocol: Protocol;
  readonly macp: Client<typeof MACPRuntimeService>;
  readonly admin: Client<typeof AdminService>;
}

export function newTransport(baseUrl: string, protocol: Protocol): Transport {
  switch (protocol) {
    case "connect-json":
      return createConnectTransport({ baseUrl });
    case "connect-binary":
      return createConnectTransport({ baseUrl, useBinaryFormat: true });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl });
  }
}

export function connectTo(baseUrl: string, protocol: Protocol): Concord {
  const transport = newTransport(baseUrl, protocol);
  return {
    protocol,
    macp: createClient(MACPRuntimeService, transport),
    admin: createClient(AdminService, transport),
  };
}

/**
 * Call options that authenticate as the holder of token. Browsers send the
 * bearer token as a request header (never a cookie), so the server's CORS
 * policy must allow the Authorization header, which Concord's does.
 */
export function as(token: string, signal?: AbortSignal) {
  return { headers: { Authorization: `Bearer ${token}` }, signal };
}

/** A random RFC 4122 version 4 UUID, the session id MACP expects. */
export function newUUID(): string {
  // crypto.randomUUID exists only in secure contexts; getRandomValues
  // everywhere.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** An envelope of mode carrying payload, encoded with its schema. */
export function envelope<S extends DescMessage>(
  mode: string,
  sessionId: string,
  sender: string,
  messageType: string,
  schema: S,
  payload: MessageInitShape<S>,
): MessageInitShape<typeof EnvelopeSchema> {
  return {
    macpVersion: "1.0",
    mode,
    messageType,
    messageId: newUUID(),
    sessionId,
    sender,
    timestampUnixMs: BigInt(Date.now()),
    payload: toBinary(schema, create(schema, payload)),
  };
}

/** Sends env as the holder of token and returns the Ack, or throws. */
export async function send(c: Concord, token: string, env: MessageInitShape<typeof EnvelopeSchema>): Promise<Ack> {
  const res = await c.macp.send({ envelope: env }, as(token));
  const ack = res.ack;
  if (!ack) throw new Error("Send answered without an Ack");
  if (!ack.ok) {
    throw new Error(`${env.messageType} refused: ${ack.error?.code ?? "?"} ${ack.error?.message ?? ""}`.trim());
  }
  return ack;
}
