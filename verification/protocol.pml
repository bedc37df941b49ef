/*
 * The audit protocol under the lease: runners applying one change unit, step for step as
 * core/executor.py, core/engine.py and core/plan.py do it (verification/README.md maps every step
 * to its code line; verification/check_mapping.py keeps that table honest).
 *
 * Compile-time knobs (spin -D...):
 *   STRAT      0 NON_TX, 1 TX_SHARED, 2 TX_SEPARATE          (executor.UnitExecutor.strategy)
 *   NR         runners (2 or 3)
 *   MAXCRASH   crashes (SIGKILL, lease lost, store outage) over the whole run; each crashed runner restarts
 *   OLD_RULE   1: the runner acts on the decision it read BEFORE waiting for the lease (issue 12's bug)
 *   FENCED     1: the lease lives in the audit store, so every append is conditional on the fence
 *              (SQLite, MongoDB, DynamoDB); 0: a separate lease backend (Redis), appends unfenced
 *   ALWAYS_RETRY 1: recovery always_retry (an unfinished non-transactional unit is applied again)
 *   GAP        1: a runner may pause between a passing lease check and the target write/commit it
 *              guards (assumption A1 of the README dropped)
 *   STATUS_LEASE_FIRST 1: `status` reads the lease holder before the audit snapshot (else after)
 *   OPERATOR   1: an operator runs `fix` on a blocked unit and `unlock --force` on a dead holder
 *   FAILS      1: the unit's apply (and its rollback) may fail
 *
 * The lease itself (clocks, skew, expiry, the 90 % local deadline, the heartbeat) is checked in
 * lease.pml; here it is abstracted by what lease.pml proves:
 *   L1  a lease is taken over (acquired by another owner while not released) only after the store
 *       judges it expired, and that happens only after the holder's local deadline has passed;
 *   L2  extend/release/fenced writes succeed only for the owner and token the store holds.
 * Whatever else the lease does is in lease.pml.
 */

#ifndef STRAT
#define STRAT 0
#endif
#ifndef NR
#define NR 2
#endif
#ifndef MAXCRASH
#define MAXCRASH 1
#endif
#ifndef OLD_RULE
#define OLD_RULE 0
#endif
#ifndef FENCED
#define FENCED 1
#endif
#ifndef ALWAYS_RETRY
#define ALWAYS_RETRY 0
#endif
#ifndef GAP
#define GAP 0
#endif
#ifndef STATUS_LEASE_FIRST
#define STATUS_LEASE_FIRST 0
#endif
#ifndef OPERATOR
#define OPERATOR 1
#endif
#ifndef FAILS
#define FAILS 1
#endif
#ifndef STATUS
#define STATUS 1
#endif

#define NON_TX 0
#define TX_SHARED 1
#define TX_SEPARATE 2

/* audit states (model.State) */
#define NONE 0
#define STARTED 1
#define APPLIED 2
#define FAILED 3
#define ROLLED_BACK 4
#define ROLLBACK_FAILED 5
#define MMA 6   /* MANUAL_MARKED_AS_APPLIED */
#define MMRB 7  /* MANUAL_MARKED_AS_ROLLED_BACK */

/* decisions (model.NextAction; RECONCILE = SKIP with reconcile=True) */
#define D_APPLY 1
#define D_SKIP 2
#define D_RECONCILE 3
#define D_BLOCKED 4
#define D_RUNNING 5

#define NEXEC (NR + MAXCRASH)  /* runner incarnations: exec ids 1..NEXEC */
#define OPER (NEXEC + 1)       /* the operator's owner id (at most 6) */

/* ---- the store: lease row (one conditional write per call) ---- */
byte l_owner = 0;  /* 0: free (released); else the exec id of the owner */
byte l_tok = 0;    /* fencing token, +1 on every acquisition */
bool l_live = 0;   /* not expired */
bool l_moved = 0;  /* ghost: set whenever the lease changes hands, lapses or is freed */

/* ---- the store: the unit's latest audit entry (store.latest) ---- */
byte a_state = NONE;
byte a_strat = 0;
byte a_tok = 0;
byte a_exec = 0;

/* ---- the target ---- */
byte effect = 0;   /* how many times the unit's effect is in place */
byte markers = 0;  /* TX_SEPARATE marker rows, bit per execution id */

/* ---- runners (indexed by exec id) ---- */
bool alive[7];
bool dl_ok[7];  /* local deadline not passed (Lease._deadline) */
bool lost[7];   /* Lease._lost */
byte mytok[7];  /* Lease.token */
bool crash_req[NR];
byte ncrash = 0;
byte nexec = 0;
byte ndone = 0;

/* the decision table of SPEC §7 (plan.decide) */
inline decide(st, strat, tok, ex, live, out) {
  if
  :: st == NONE || st == ROLLED_BACK || st == MMRB -> out = D_APPLY
  :: st == APPLIED || st == MMA -> out = D_SKIP
  :: st == STARTED && live != 0 && tok == live -> out = D_RUNNING
  :: else ->
    if
    :: st == FAILED && strat != NON_TX -> out = D_APPLY
    :: st == STARTED && strat == TX_SEPARATE ->
      if
      :: (markers >> ex) & 1 -> out = D_RECONCILE
      :: else -> out = D_APPLY
      fi
    :: st == STARTED && strat == TX_SHARED -> out = D_APPLY
    :: else -> out = (ALWAYS_RETRY -> D_APPLY : D_BLOCKED)
    fi
  fi
}

/* no lost entry: the audit entry tells the truth about the effect, or blocks the unit for a person */
inline consistent() {
  assert(effect != 1 || a_state == APPLIED || a_state == MMA
         || (a_strat == NON_TX && (a_state == STARTED || a_state == FAILED || a_state == ROLLBACK_FAILED))
         || (a_strat == TX_SEPARATE && a_state == STARTED && ((markers >> a_exec) & 1)));
  assert(effect == 1 || !(a_state == APPLIED || a_state == MMA))
}

/* fencing: a write is accepted only from the owner and token the store holds */
#define HOLDS(me) (l_owner == me && l_tok == mytok[me])

/* Lease.check(): no I/O; fails once the local deadline passed or a heartbeat saw the lease gone */
#define CHECK(me) if :: dl_ok[me] && !lost[me] -> skip :: else -> goto lease_lost fi

/* executor.record: lease.check() (local), then store.append(entry, fence=...). Without GAP the
   check and the append it guards are one step (assumption A1); with GAP a pause may fall between. */
inline append(me, st, strat) {
#if GAP
  CHECK(me);
#endif
  atomic {
    if
    :: !(dl_ok[me] && !lost[me]) -> goto lease_lost
    :: FENCED && (dl_ok[me] && !lost[me]) && !HOLDS(me) -> lost[me] = 1; goto lease_lost
    :: else ->
      assert(HOLDS(me));  /* fencing: no accepted write from a runner whose lease was lost */
      a_state = st; a_strat = strat; a_tok = mytok[me]; a_exec = me
    fi
  }
}

/* Lease.ensure(): backend.extend (owner and token) then _hold */
inline ensure(me) {
  atomic {
    if
    :: HOLDS(me) -> l_live = 1; dl_ok[me] = 1
    :: else -> lost[me] = 1; goto lease_lost
    fi
  }
}

/* Lease.verify(): check(), then backend.current() compared with owner and token */
inline verify(me) {
  CHECK(me);
  if
  :: HOLDS(me) && l_live -> skip
  :: else -> lost[me] = 1; goto lease_lost
  fi
}

/* executor._guard_target(): Lease.refresh() then, unless fenced, Lease.verify(). refresh() extends
   when a third of the lease has passed (always so once the local deadline has passed) and else only
   checks; L1 leaves a check that passes with the token still current, so both come to: extend while
   the store shows this owner and token, else "lease lost". */
inline guard_target(me) {
  atomic {
    if
    :: HOLDS(me) -> l_live = 1; dl_ok[me] = 1; lost[me] = 0
    :: else -> lost[me] = 1; goto lease_lost
    fi
  };
  if
  :: !FENCED -> verify(me)
  :: else -> skip
  fi
}

/* executor._apply_non_tx */
inline apply_non_tx(me) {
  append(me, STARTED, NON_TX);
#if GAP
  CHECK(me);
  if
  :: FAILS -> goto apply_failed
  :: atomic { assert(effect == 0); effect++ } /* the template step */
  fi;
#else
  if
  :: FAILS -> CHECK(me); goto apply_failed
  :: atomic { dl_ok[me] && !lost[me] -> assert(HOLDS(me)); assert(effect == 0); effect++ }
  :: atomic { !(dl_ok[me] && !lost[me]) -> goto lease_lost }
  fi;
#endif
  append(me, APPLIED, NON_TX)
}

/* executor._apply_separate: STARTED, begin, steps, check, marker, verify, commit, APPLIED */
inline apply_separate(me) {
  append(me, STARTED, TX_SEPARATE);
  CHECK(me);               /* _run_steps: check before the step, the write stays in the transaction */
  if
  :: FAILS -> goto apply_failed  /* _abort: nothing committed */
  :: skip
  fi;
  CHECK(me);               /* line "self._check_lease()" before the marker */
#if GAP
  verify(me);
  atomic { assert(effect == 0); effect++; markers = markers | (1 << me) }
#else
  atomic {
    if
    :: dl_ok[me] && !lost[me] && HOLDS(me) && l_live ->  /* verify() ... _committed(session) */
      assert(effect == 0); effect++; markers = markers | (1 << me)
    :: else -> lost[me] = 1; goto lease_lost
    fi
  }
#endif
  append(me, APPLIED, TX_SEPARATE);
  markers = markers & ~(1 << me)  /* _clear_marker: only needed between the commit and APPLIED */
}

/* executor._apply_shared: begin, STARTED, steps, APPLIED in one transaction, commit */
inline apply_shared(me) {
  CHECK(me);  /* record(STARTED, tx=session): check, the entry is pending */
  CHECK(me);  /* the step */
  if
  :: FAILS -> goto apply_failed
  :: skip
  fi;
  CHECK(me);  /* record(APPLIED, tx=session) */
  atomic {    /* _committed: the fenced entries and the change commit together or not at all */
    if
    :: HOLDS(me) ->
      assert(effect == 0); effect++;
      a_state = APPLIED; a_strat = TX_SHARED; a_tok = mytok[me]; a_exec = me
    :: else -> lost[me] = 1; goto lease_lost
    fi
  };
}

/* engine.compensate -> executor.rollback of this execution's FAILED non-transactional unit */
inline compensate(me) {
  if
  :: a_state == FAILED && a_exec == me && a_strat == NON_TX ->
    guard_target(me);
    if
    :: FAILS -> append(me, ROLLBACK_FAILED, NON_TX)
    :: atomic { dl_ok[me] && !lost[me] -> assert(HOLDS(me)); if :: effect > 0 -> effect-- :: else fi }
       append(me, ROLLED_BACK, NON_TX)
    :: atomic { !(dl_ok[me] && !lost[me]) -> goto lease_lost }
    fi
  :: else -> skip  /* FAILED transactional: nothing committed */
  fi
}

proctype Runner(byte r) {
  byte me, hint, dec, st, strat, tok, ex;
  byte lives = 0;
incarnation:
  atomic { nexec++; me = nexec; alive[me] = 1; crash_req[r] = 0 }
  {
    /* a plan made before the lease (the Airflow plan task; a read before waiting) */
    atomic { st = a_state; strat = a_strat; tok = a_tok; ex = a_exec };
    decide(st, strat, tok, ex, 0, hint);
    atomic { st = 0; strat = 0; tok = 0; ex = 0 };
#if !OLD_RULE
    if
    :: hint == D_SKIP -> goto finish  /* a hint may only skip work (plan.hinted_done) */
    :: else -> skip
    fi;
#endif
    /* Lease.acquire -> backend.acquire: free, expired or same owner; token + 1 */
    atomic {
      (l_owner == 0 || !l_live || l_owner == me) ->
      if
      :: l_owner != 0 && l_owner != me -> consistent()  /* a takeover: the old holder's entries are in */
      :: else -> skip
      fi;
      l_tok++; l_moved = 1; l_owner = me; l_live = 1; mytok[me] = l_tok; dl_ok[me] = 1; lost[me] = 0
    };
#if OLD_RULE
    dec = hint;  /* issue 12: the earlier decision is acted on */
#else
    /* engine.run_stage: one store.latest() under the lease, then decide */
    atomic { st = a_state; strat = a_strat; tok = a_tok; ex = a_exec };
    decide(st, strat, tok, ex, 0, dec);
    atomic { st = 0; strat = 0; tok = 0; ex = 0; hint = 0 };
#endif
    if
    :: dec == D_BLOCKED || dec == D_SKIP || dec == D_RUNNING -> skip
    :: dec == D_RECONCILE -> append(me, APPLIED, TX_SEPARATE)  /* the marker is left: harmless once APPLIED */
    :: dec == D_APPLY ->
      guard_target(me);
      if
      :: STRAT == NON_TX -> apply_non_tx(me)
      :: STRAT == TX_SEPARATE -> apply_separate(me)
      :: STRAT == TX_SHARED -> apply_shared(me)
      fi
    fi;
    goto run_end;
apply_failed:
    append(me, FAILED, STRAT);
    compensate(me);
run_end:
    atomic {
      consistent();
      if  /* Lease.release -> backend.release (owner and token) */
      :: HOLDS(me) -> l_owner = 0; l_live = 0; l_moved = 1
      :: else -> skip
      fi;
      dl_ok[me] = 0; hint = 0; dec = 0
    };
    goto finish;
lease_lost:
    atomic { dl_ok[me] = 0; hint = 0; dec = 0; st = 0; strat = 0; tok = 0; ex = 0 }  /* "lease lost": no further entry, no release, exit 1 */
  } unless { crash_req[r] };
  /* crashed (or exited after a lost lease): the process is gone, its lease left to expire */
  atomic {
    alive[me] = 0; dl_ok[me] = 0; hint = 0; dec = 0; st = 0; strat = 0; tok = 0; ex = 0;
    if
    :: crash_req[r] && lives < MAXCRASH -> lives++; goto incarnation
    :: else -> skip
    fi
  };
finish:
  atomic { alive[me] = 0; dl_ok[me] = 0; ndone++ }
}


#define CRASH(k) :: atomic { k < NR && ncrash < MAXCRASH && !crash_req[k] -> crash_req[k] = 1; ncrash++ }

/* SIGKILL at any step: the runner's next statement is not executed */
active proctype Crasher() {
end_crash:
  do
  CRASH(0) CRASH(1) CRASH(2)
  :: ncrash >= MAXCRASH -> break
  od
}

/* Time. The holder's local deadline passes (a freeze, a slow step, a failed heartbeat) and the store
   then judges the lease expired: L1, proven in lease.pml, is that the store never judges it expired
   (for any runner's clock) before the holder's local deadline. The state "deadline passed, store
   still live" is folded into this one step: in it the holder can only fail a check or extend, and
   nobody else can act on the lease, so it shows nothing the folded step does not.
   The heartbeat thread (Lease._beat) is the absence of a lapse: it extends only while the store
   still shows this owner and token, and a lapse followed by an extension with no takeover in
   between is, to every runner, the same as no lapse. */
active proctype Clock() {
end_clock:
  do
  :: atomic { l_owner != 0 && l_live -> dl_ok[l_owner] = 0; l_live = 0; l_moved = 1 }
  od
}

#if OPERATOR
/* commands.fix under the lease (holding), engine.fix; commands.unlock --force of a dead holder */
active proctype Operator() {
  byte st, strat, tok, ex, dec;
  if
  :: skip ->  /* `status` said blocked: a person runs fix, which waits for the lease */
end_fix:
    atomic { (l_owner == 0 || !l_live) && a_strat == NON_TX && (a_state == STARTED || a_state == FAILED || a_state == ROLLBACK_FAILED) ->
      if :: l_owner != 0 -> consistent() :: else fi;
      l_tok++; l_moved = 1; l_owner = OPER; l_live = 1; mytok[OPER] = l_tok; dl_ok[OPER] = 1; alive[OPER] = 1 };
    atomic { st = a_state; strat = a_strat; tok = a_tok; ex = a_exec };
    decide(st, strat, tok, ex, 0, dec);
    if
    :: dec == D_BLOCKED ->  /* a person checks the target, then records what they found */
      atomic {  /* executor.record: check() and the fenced append, or "lease lost" */
        if
        :: HOLDS(OPER) && dl_ok[OPER] -> a_state = (effect > 0 -> MMA : MMRB); a_strat = NON_TX; a_tok = l_tok; a_exec = OPER
        :: else -> skip
        fi }
    :: else -> skip
    fi;
    atomic { consistent(); if :: HOLDS(OPER) -> l_owner = 0; l_live = 0; l_moved = 1 :: else fi; alive[OPER] = 0 }
  :: skip ->  /* only when a holder is dead: an operator who waits for that need never act */
end_unlock:
    atomic { l_owner != 0 && l_owner != OPER && !alive[l_owner] -> l_owner = 0; l_live = 0; l_moved = 1 }
  :: skip
  fi
}
#endif

#if STATUS
/* commands.status: no lease; a unit the live holder is applying is "running", never blocked */
active proctype Status() {
  byte st, strat, tok, ex, live, dec;
#if STATUS_LEASE_FIRST
  atomic { live = (l_live && l_owner != 0 -> l_tok : 0) };  /* ws.holder() */
  atomic { st = a_state; strat = a_strat; tok = a_tok; ex = a_exec; l_moved = !l_live };  /* store.latest() */
#else
  atomic { st = a_state; strat = a_strat; tok = a_tok; ex = a_exec; l_moved = !l_live };
  atomic { live = (l_live && l_owner != 0 -> l_tok : 0) };
#endif
  decide(st, strat, tok, ex, live, dec);
  /* the STARTED entry read belongs to a runner that has held a live lease from that read to now */
  assert(!(dec == D_BLOCKED && st == STARTED && !l_moved && l_live && l_owner == ex && l_tok == tok && alive[ex]))
}
#endif

init {
  byte i;
  atomic {
    for (i : 0 .. NR - 1) { run Runner(i) }
  }
}
