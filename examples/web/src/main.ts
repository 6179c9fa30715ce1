// The example page: a Decision session run from the browser by three
// participants, watched live through WatchSessions and the session's
// timeline, over the protocol the page's selector names.
import { Code, ConnectError } from "@connectrpc/connect";
import { fromBinary } from "@bufbuild/protobuf";

import { connectTo, envelope, isProtocol, newUUID, protocols, send, type Concord, type Protocol } from "./concord";
import { CommitmentPayloadSchema, SessionLifecycleEvent_EventType, SessionStartPayloadSchema } from "./gen/macp/v1/core_pb";
import { SessionState } from "./gen/macp/v1/envelope_pb";
import { ProposalPayloadSchema, VotePayloadSchema } from "./gen/macp/modes/decision/v1/decision_pb";
import type { WatchSessionResponse } from "./gen/concord/admin/v1/admin_pb";

const MODE = "macp.mode.decision.v1";
const PARTICIPANTS = ["alice", "bob"] as const;
type Who = "coordinator" | (typeof PARTICIPANTS)[number];

const $ = <T extends HTMLElement>(id: string) => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page lacks #${id}`);
  return el as T;
};

const ui = {
  api: $<HTMLInputElement>("api"),
  protocol: $<HTMLSelectElement>("protocol"),
  connect: $<HTMLButtonElement>("connect"),
  runtime: $("runtime"),
  start: $<HTMLButtonElement>("start"),
  propose: $<HTMLButtonElement>("propose"),
  voteAlice: $<HTMLButtonElement>("vote-alice"),
  voteBob: $<HTMLButtonElement>("vote-bob"),
  commit: $<HTMLButtonElement>("commit"),
  sessionId: $("session-id"),
  sessionState: $("session-state"),
  sessions: $("sessions"),
  sessionsStatus: $("sessions-status"),
  timeline: $("timeline"),
  timelineStatus: $("timeline-status"),
  measure: $<HTMLButtonElement>("measure"),
  measureN: $<HTMLInputElement>("measure-n"),
  latency: $("latency"),
  log: $("log"),
};

const token = (who: Who) => $<HTMLInputElement>(`token-${who}`).value.trim() || who;

let concord: Concord | undefined;
let streams: AbortController | undefined;
let timelineStream: AbortController | undefined;
let sessionId = "";
/** The participants who voted in the current session. */
const votes = new Set<Who>();
/** The step the session is at, kept across reconnections. */
let current: Exclude<Step, "connect"> = "start";

function log(text: string, kind: "info" | "error" = "info") {
  const li = document.createElement("li");
  li.className = kind;
  li.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  ui.log.prepend(li);
}

/** A readable message for a failed call, with the MACP code when present. */
function describe(err: unknown): string {
  if (err instanceof ConnectError) {
    const macp = err.metadata.get("macp-error-code");
    const text = `${macp ?? Code[err.code]}: ${err.rawMessage}`;
    // fetch hides why a cross-origin call failed; the usual cause is CORS.
    if (err.code === Code.Unknown && /failed to fetch/i.test(err.rawMessage)) {
      return `${text} (is the API running, and does its --allowed-origins list ${location.origin}?)`;
    }
    return text;
  }
  return err instanceof Error ? err.message : String(err);
}

const stateName = (s: SessionState) => SessionState[s] ?? String(s);
const eventName = (e: SessionLifecycleEvent_EventType) => SessionLifecycleEvent_EventType[e] ?? String(e);

type Step = "connect" | "start" | "propose" | "vote" | "commit" | "done";

/** Enables the step buttons that make sense in the session's state. */
function setStep(step: Step) {
  if (step !== "connect") current = step;
  ui.start.disabled = !(step === "start" || step === "done");
  ui.propose.disabled = step !== "propose";
  ui.voteAlice.disabled = step !== "vote" || votes.has("alice");
  ui.voteBob.disabled = step !== "vote" || votes.has("bob");
  ui.commit.disabled = step !== "commit";
  ui.measure.disabled = step === "connect";
}

async function connect() {
  streams?.abort();
  timelineStream?.abort();
  const protocol = ui.protocol.value;
  if (!isProtocol(protocol)) throw new Error(`unknown protocol ${protocol}`);
  const c = connectTo(ui.api.value.replace(/\/+$/, ""), protocol);
  setStep("connect");
  ui.runtime.textContent = "connecting…";
  try {
    const res = await c.macp.initialize({ supportedProtocolVersions: ["1.0"] });
    const runtime = [res.runtimeInfo?.name, res.runtimeInfo?.version].filter(Boolean).join(" ") || "runtime";
    ui.runtime.textContent = `connected to ${runtime}, MACP ${res.selectedProtocolVersion}, over ${protocols[protocol]}`;
    ui.runtime.dataset.connected = protocol;
  } catch (err) {
    ui.runtime.textContent = `cannot connect: ${describe(err)}`;
    delete ui.runtime.dataset.connected;
    log(`Initialize over ${protocols[protocol]} failed: ${describe(err)}`, "error");
    return;
  }
  concord = c;
  log(`connected over ${protocols[protocol]}`);
  streams = new AbortController();
  void watchSessions(c, streams.signal);
  if (sessionId) void watchTimeline(c, sessionId);
  setStep(current);
}

/** Follows every session the coordinator may see (WatchSessions). */
async function watchSessions(c: Concord, signal: AbortSignal) {
  ui.sessions.replaceChildren();
  ui.sessionsStatus.textContent = `live over ${protocols[c.protocol]}`;
  try {
    for await (const res of c.macp.watchSessions({}, { headers: { Authorization: `Bearer ${token("coordinator")}` }, signal })) {
      const ev = res.event;
      const md = ev?.session;
      if (!ev || !md) continue;
      const li = document.createElement("li");
      li.dataset.session = md.sessionId;
      li.dataset.event = eventName(ev.eventType);
      li.textContent = `${eventName(ev.eventType)}  ${md.sessionId.slice(0, 8)}…  ${md.mode}  ${stateName(md.state)}`;
      ui.sessions.prepend(li);
    }
    ui.sessionsStatus.textContent = "stream ended";
  } catch (err) {
    if (signal.aborted) return;
    ui.sessionsStatus.textContent = `stream failed: ${describe(err)}`;
    log(`WatchSessions: ${describe(err)}`, "error");
  }
}

/** One line of the timeline, with the payload fields worth reading. */
function summary(e: WatchSessionResponse): string {
  const env = e.envelope;
  if (!env) return `#${e.sequence}  runtime record → ${stateName(e.stateAfter)}`;
  let detail = "";
  try {
    switch (env.messageType) {
      case "Proposal": {
        const p = fromBinary(ProposalPayloadSchema, env.payload);
        detail = `${p.proposalId}: ${p.option}`;
        break;
      }
      case "Vote": {
        const v = fromBinary(VotePayloadSchema, env.payload);
        detail = `${v.vote} ${v.proposalId}`;
        break;
      }
      case "Commitment":
        detail = fromBinary(CommitmentPayloadSchema, env.payload).action;
        break;
    }
  } catch {
    detail = "(undecodable payload)";
  }
  return `#${e.sequence}  ${env.sender}  ${env.messageType}  ${detail}  → ${stateName(e.stateAfter)}`;
}

/** Follows the session's log live (AdminService.WatchSession). */
async function watchTimeline(c: Concord, id: string) {
  timelineStream?.abort();
  const ctl = new AbortController();
  timelineStream = ctl;
  ui.timeline.replaceChildren();
  ui.timelineStatus.textContent = `live over ${protocols[c.protocol]}`;
  try {
    for await (const e of c.admin.watchSession({ sessionId: id }, { headers: { Authorization: `Bearer ${token("coordinator")}` }, signal: ctl.signal })) {
      const li = document.createElement("li");
      li.dataset.type = e.envelope?.messageType ?? "runtime";
      li.textContent = summary(e);
      ui.timeline.append(li);
      ui.sessionState.textContent = stateName(e.stateAfter);
    }
  } catch (err) {
    if (ctl.signal.aborted) return;
    ui.timelineStatus.textContent = `stream failed: ${describe(err)}`;
    log(`WatchSession: ${describe(err)}`, "error");
  }
}

/** Runs one step of the session (the buttons call it), then enables the next. */
async function step(run: (c: Concord) => Promise<Step>) {
  if (!concord) return;
  try {
    setStep(await run(concord));
  } catch (err) {
    log(describe(err), "error");
  }
}

ui.start.onclick = () =>
  step(async (c) => {
    sessionId = newUUID();
    ui.sessionId.textContent = sessionId;
    const ack = await send(
      c,
      token("coordinator"),
      envelope(MODE, sessionId, "coordinator", "SessionStart", SessionStartPayloadSchema, {
        intent: "pick a deployment region",
        participants: [...PARTICIPANTS],
        modeVersion: "1.0.0",
        configurationVersion: "web-example-1",
        ttlMs: 600_000n,
      }),
    );
    log(`coordinator started ${sessionId} (${stateName(ack.sessionState)})`);
    void watchTimeline(c, sessionId);
    votes.clear();
    return "propose";
  });

ui.propose.onclick = () =>
  step(async (c) => {
    await send(c, token("alice"), envelope(MODE, sessionId, "alice", "Proposal", ProposalPayloadSchema, { proposalId: "p1", option: "eu-west", rationale: "closest to our users" }));
    log("alice proposed p1: eu-west");
    return "vote";
  });

for (const [who, button] of [["alice", ui.voteAlice], ["bob", ui.voteBob]] as const) {
  button.onclick = () =>
    step(async (c) => {
      await send(c, token(who), envelope(MODE, sessionId, who, "Vote", VotePayloadSchema, { proposalId: "p1", vote: "APPROVE" }));
      log(`${who} voted APPROVE`);
      votes.add(who);
      return votes.size === PARTICIPANTS.length ? "commit" : "vote";
    });
}

ui.commit.onclick = () =>
  step(async (c) => {
    const ack = await send(
      c,
      token("coordinator"),
      envelope(MODE, sessionId, "coordinator", "Commitment", CommitmentPayloadSchema, {
        commitmentId: "c1",
        action: "decision.selected",
        authorityScope: "deployment",
        reason: "both participants approved p1",
        modeVersion: "1.0.0",
        configurationVersion: "web-example-1",
        outcomePositive: true,
      }),
    );
    log(`coordinator committed: session ${stateName(ack.sessionState)}`);
    return "done";
  });

/** What a latency measurement calls: a static fetch or a unary call. */
type Probe = "static" | Protocol;

/** A function that makes one round trip of probe. */
function prober(probe: Probe): () => Promise<unknown> {
  if (probe === "static") {
    // The page's stylesheet: a small file of the page's own origin.
    const file = new URL("style.css", location.href).href;
    return async () => (await fetch(file, { cache: "no-store" })).arrayBuffer();
  }
  const c = connectTo(ui.api.value.replace(/\/+$/, ""), probe);
  return () => c.macp.initialize({ supportedProtocolVersions: ["1.0"] });
}

/** Makes n round trips of probe one after the other (after one warm-up) and returns each one's time in ms. */
async function roundTrips(probe: Probe, n: number): Promise<number[]> {
  const call = prober(probe);
  await call();
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await call();
    times.push(performance.now() - t0);
  }
  return times;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export interface Latency {
  calls: number;
  /** A same-origin fetch of the page's stylesheet (no cache). */
  staticFetch: number;
  /** Initialize, per protocol. */
  unary: Record<Protocol, number>;
}

/** Median round trips seen from this page: a static fetch and one unary call per protocol. */
async function measure(n: number): Promise<Latency> {
  const out: Latency = { calls: n, staticFetch: median(await roundTrips("static", n)), unary: { "connect-json": 0, "connect-binary": 0, "grpc-web": 0 } };
  for (const p of Object.keys(protocols) as Protocol[]) out.unary[p] = median(await roundTrips(p, n));
  return out;
}

ui.measure.onclick = async () => {
  ui.measure.disabled = true;
  ui.latency.textContent = "measuring…";
  try {
    const n = Math.max(1, Math.min(1000, Number(ui.measureN.value) || 50));
    const r = await measure(n);
    const ms = (x: number) => `${x.toFixed(2)} ms`;
    ui.latency.textContent =
      `median of ${r.calls}: static fetch ${ms(r.staticFetch)}, ` +
      (Object.keys(r.unary) as Protocol[]).map((p) => `${protocols[p]} ${ms(r.unary[p])}`).join(", ");
    ui.latency.dataset.result = JSON.stringify(r);
  } catch (err) {
    ui.latency.textContent = `measurement failed: ${describe(err)}`;
  } finally {
    ui.measure.disabled = false;
  }
};

// Hooks for scripted runs (the browser tests and benchmarks).
declare global {
  interface Window {
    concordExample: { measure: typeof measure; roundTrips: typeof roundTrips };
  }
}
window.concordExample = { measure, roundTrips };

// The API is this page's origin unless ?api= names another, and the
// protocol comes from ?protocol= when given.
const params = new URLSearchParams(location.search);
ui.api.value = params.get("api") ?? location.origin;
const wanted = params.get("protocol");
if (wanted && isProtocol(wanted)) ui.protocol.value = wanted;
ui.connect.onclick = () => void connect();
ui.protocol.onchange = () => void connect();
setStep("connect");
void connect();
