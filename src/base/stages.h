/* stages.h: a sequence of dependent parallel loops in one pool job (base/pool.h).
 *
 * kiln_pool_stages runs `stages` stages of `items` independent items each: every item of
 * stage s runs once, after every item of stage s - 1 has finished (its writes visible), and
 * the call returns when the last stage is done. It is one kiln_pool_for of `threads`
 * participants that stay for the whole sequence and meet at a spin wait between stages,
 * instead of one pool job per stage (a job costs a wake-up and a join; a recurrent layer
 * has a stage per time step of some microseconds).
 *
 * Items are claimed, not assigned: the items of a stage are cut into one contiguous slice
 * per participant; each participant claims the items of its own slice one at a time (so it
 * touches the same data stage after stage, in its own cache), and when its slice has none
 * left, the unclaimed items of the other slices, from the end their owners reach last
 * (stealing, stages.c). A participant descheduled for a while (a machine with more runnable
 * threads than CPUs) thus holds up at most the stage of the item it is running, and no later
 * one: the others run its items meanwhile, and it joins the open stage when it is back.
 * Without a stall each participant runs its own slice, but for a few items at its end when
 * they finish nearly together. With a nested call, a busy pool or one thread, the caller
 * runs everything, in the order below. A stage waits only for items claimed by running
 * participants: never a deadlock. Which thread runs an item is not fixed, so results must
 * not depend on it.
 *
 * Order: a slice is claimed in ascending order, then, `turn` stages later, in descending
 * order, and so on (turn 1: every other stage). Data that an item uses again stage after
 * stage (a recurrent layer's weights) is then the most recently used when the order turns,
 * so a slice somewhat larger than the cache still mostly hits, where a cyclic order would
 * miss on every item (measured: the bench set's LSTM, 4 MiB of weights a step against 2 MiB
 * of L2, from 21 to 14 ms of CPU per run on one thread).
 */
#ifndef KILN_BASE_STAGES_H
#define KILN_BASE_STAGES_H

#include <stddef.h>

#include "base/pool.h"

/* Runs item `item` of stage `stage`. */
typedef void (*kiln_stage_fn)(void *ctx, size_t stage, size_t item);

/* The participants a call may ask for (larger `threads` is taken as this). */
#define KILN_STAGES_MAX_THREADS 64

/* fn over every (stage, item), stage by stage, on up to `threads` participants of the pool
 * (at most kiln_pool_threads(pool); 1 or less: inline on the caller, in the order above);
 * the order turns every `turn` stages (0 is taken as 1). */
void kiln_pool_stages(struct kiln_pool *pool, int threads, size_t stages, size_t items, size_t turn,
                      kiln_stage_fn fn, void *ctx);

#endif
