import assert from "node:assert/strict";
import { it } from "node:test";
import { LoginLimiter } from "../../../server/src/auth/login-limiter.js";

it("blocks a user after its failures, for the rest of the window, without blocking others", () => {
  const limiter = new LoginLimiter({ clientFailures: 100, userFailures: 3, windowMs: 60_000 });
  const t0 = 1_000_000;
  for (let i = 0; i < 3; i++) {
    assert.equal(limiter.retryAfter("10.0.0.1", "alice", t0), 0);
    limiter.failed("10.0.0.1", "alice", t0);
  }
  assert.equal(limiter.retryAfter("10.0.0.2", "alice", t0 + 1000), 59, "from any client");
  assert.equal(limiter.retryAfter("10.0.0.1", "bob", t0 + 1000), 0, "other users are not blocked");
  assert.equal(limiter.retryAfter("10.0.0.1", "alice", t0 + 60_000), 0, "the window passes");
});

it("blocks a client after its failures across user names", () => {
  const limiter = new LoginLimiter({ clientFailures: 5, userFailures: 100, windowMs: 10_000 });
  for (let i = 0; i < 5; i++) limiter.failed("10.0.0.9", `user${i}`, 0);
  assert.equal(limiter.retryAfter("10.0.0.9", "someone-else", 1), 10);
  assert.equal(limiter.retryAfter("10.0.0.8", "someone-else", 1), 0);
});

it("a successful login clears the user's count", () => {
  const limiter = new LoginLimiter({ clientFailures: 100, userFailures: 2, windowMs: 10_000 });
  limiter.failed("c", "u", 0);
  limiter.succeeded("c", "u");
  limiter.failed("c", "u", 1);
  assert.equal(limiter.retryAfter("c", "u", 2), 0);
});

it("counts an attempt when it starts, so parallel attempts past the limit are refused before hashing", () => {
  const limiter = new LoginLimiter({ clientFailures: 3, userFailures: 100, windowMs: 10_000 });
  const started = Array.from({ length: 10 }, (_, i) => limiter.reserve("10.0.0.1", `u${i}`, 0));
  assert.deepEqual(started, [0, 0, 0, 10, 10, 10, 10, 10, 10, 10], "none of the first three finished yet");
});

it("a reserved attempt that succeeds or was never checked is given back", () => {
  const limiter = new LoginLimiter({ clientFailures: 2, userFailures: 2, windowMs: 10_000 });
  assert.equal(limiter.reserve("c", "u", 0), 0);
  limiter.succeeded("c", "u");
  assert.equal(limiter.reserve("c", "v", 1), 0);
  limiter.release("c", "v");
  assert.equal(limiter.reserve("c", "w", 2), 0);
  assert.equal(limiter.reserve("c", "w", 3), 0, "two failures are allowed, the given-back ones not counted");
  assert.equal(limiter.reserve("c", "x", 4), 10);
});
