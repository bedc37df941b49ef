/*
 * The lease in time: core/lease.py (Lease) over a LeaseBackend (stores/sqlite.py, stores/mongo.py,
 * stores/dynamodb.py, stores/redis_lease.py), with real (discrete) time, per-runner clock offsets,
 * freezes (SIGSTOP, GC) of any length and runners that stop for good (a crash is a freeze that
 * never ends). verification/README.md maps each step to its code line.
 *
 * One tick = lease_seconds / LEASE. Time is kept relative (ticks left), so the search covers
 * unbounded time. Knobs (spin -D...):
 *   NR      runners (2 or 3)
 *   SPREAD  clock spread D in ticks: runner 0's wall clock is D ahead of the others'
 *   LOCAL   the local deadline in ticks (9 = the code's 90 %; 11 shows the check has teeth)
 *   PROVE_L1, PROVE_L3  which properties are asserted
 *   HOST_CLOCK 1: expiry judged by the calling runner's clock (SQLite, DynamoDB);
 *              0: by the store's own clock (MongoDB $$NOW, Redis TIME/PTTL)
 *
 * Properties (assertions):
 *   L1  when a lease is acquired by another owner without having been released, the old holder's
 *       local deadline (Lease._hold: started + 0.9 x lease) has passed: the old holder's
 *       Lease.check() fails before any further target write or commit;
 *   L1' every write a runner makes after a passing Lease.check() is made while the store still
 *       shows its owner and token (the form protocol.pml relies on);
 *   L3  a holder that is not frozen and heartbeats on time (Lease._beat: every third of the lease)
 *       is never taken over (the README's "lease_seconds > 1.5 x D" rule).
 */

#ifndef NR
#define NR 2
#endif
#ifndef SPREAD
#define SPREAD 1
#endif
#ifndef HOST_CLOCK
#define HOST_CLOCK 1
#endif

#define LEASE 10          /* lease_seconds, in ticks */
#ifndef LOCAL
#define LOCAL 9           /* Lease._hold: started + ttl * 0.9 */
#endif
#ifndef PROVE_L1
#define PROVE_L1 1
#endif
#ifndef PROVE_L3
#define PROVE_L3 1
#endif
#define BEAT 3            /* Lease._beat: stop.wait(ttl / 3) */

#define OFF(r) (HOST_CLOCK && (r) == 0 -> SPREAD : 0)  /* the judging clock of runner r minus true time */

/* the lease row; expires_at is kept as "ticks left by its writer's clock" */
byte owner = 0;   /* 0 free, else runner + 1 */
short left = 0;   /* expires_at - the writer's clock now (the writer is the owner) */

/* runners (Lease objects) */
bool cur[NR];       /* Lease.token equals the row's token (tokens only ever compare for equality) */
bool held[NR];      /* Lease.token is not None */
byte dl_left[NR];   /* Lease._deadline - monotonic now */
byte since[NR];     /* ticks since the heartbeat last extended */
bool lost[NR];      /* Lease._lost */
bool frozen[NR];
bool late[NR];      /* ghost: missed a heartbeat (frozen past a third of the lease) since it acquired */

#define HOLDS(r) (owner == (r) + 1 && cur[r])
#define LOCAL_OK(r) (held[r] && !lost[r] && dl_left[r] > 0)  /* Lease.check() passes */
/* runner r's clock says the row expired: expires_at <= now (SQLite: "expires_at <= ?") */
#define EXPIRED_FOR(r) (owner != 0 && left + OFF(owner - 1) - OFF(r) <= 0)

inline newtoken(r) {
  cur[0] = 0;
  if :: NR > 1 -> cur[1] = 0 :: else fi;
  if :: NR > 2 -> cur[2] = 0 :: else fi;
  cur[r] = 1
}

proctype Runner(byte r) {
end_run:
  do
  /* Lease.try_acquire -> backend.acquire: free, expired (by the judging clock) or same owner; token + 1 */
  :: atomic { !frozen[r] && !held[r] && (owner == 0 || EXPIRED_FOR(r) || owner == r + 1) ->
       if
       :: owner != 0 && owner != r + 1 ->
         assert(!PROVE_L1 || dl_left[owner - 1] == 0);                /* L1 */
         assert(!PROVE_L3 || late[owner - 1] || !held[owner - 1])     /* L3 */
       :: else -> skip
       fi;
       owner = r + 1; newtoken(r); left = LEASE;
       held[r] = 1; dl_left[r] = LOCAL; since[r] = 0; lost[r] = 0; late[r] = 0 }
  /* Lease.ensure -> backend.extend (owner and token), by the heartbeat or refresh() */
  :: atomic { !frozen[r] && held[r] && !lost[r] ->
       if
       :: HOLDS(r) -> left = LEASE; dl_left[r] = LOCAL; since[r] = 0
       :: else -> lost[r] = 1  /* _mark_lost: "the store no longer shows this owner and token" */
       fi }
  /* a target write (or commit) after a passing Lease.check() */
  :: atomic { !frozen[r] && LOCAL_OK(r) -> assert(!PROVE_L1 || HOLDS(r)) }  /* L1' */
  /* Lease.check() fails: the runner stops ("lease lost"), releases nothing */
  :: atomic { !frozen[r] && held[r] && !LOCAL_OK(r) -> held[r] = 0; lost[r] = 0; cur[r] = 0 }
  /* Lease.release -> backend.release (owner and token) */
  :: atomic { !frozen[r] && held[r] && !lost[r] ->
       if :: HOLDS(r) -> owner = 0; left = 0 :: else fi; held[r] = 0; cur[r] = 0 }
  /* SIGSTOP / SIGCONT, a GC pause, a stop for good */
  :: atomic { !frozen[r] -> frozen[r] = 1 }
  :: atomic { frozen[r] -> frozen[r] = 0 }
  od
}

#define ON_TIME(r) (frozen[r] || !held[r] || lost[r] || since[r] < BEAT)
#define AGE(r) if :: dl_left[r] > 0 -> dl_left[r]-- :: else fi; \
               if :: held[r] && !lost[r] && since[r] >= BEAT -> late[r] = 1 :: else fi; \
               if :: since[r] < BEAT -> since[r]++ :: else fi

/* one tick of true time; a live, unfrozen holder's heartbeat fires on time (L3's premise) */
active proctype Tick() {
end_tick:
  do
  :: atomic { ON_TIME(0) && (NR < 2 || ON_TIME(1)) && (NR < 3 || ON_TIME(2)) ->
       if :: owner != 0 && left > -(SPREAD + 1) -> left-- :: else fi;
       AGE(0);
       if :: NR > 1 -> AGE(1) :: else fi;
       if :: NR > 2 -> AGE(2) :: else fi }
  od
}

init {
  byte i;
  atomic { for (i : 0 .. NR - 1) { run Runner(i) } }
}
