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
 * per participant; each participant claims the items of its own slice (so it touches the
 * same data stage after stage, in its own cache) and those of participants that the pool has
 * not started yet. One that waits for a stage much longer than its own share took (a
 * participant descheduled while it holds an item) goes on alone from the next stage, every
 * slice its own, and the others leave (stages.c); with a nested call, a busy pool or one
 * thread, the caller runs everything. A stage waits only for items claimed by running
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
