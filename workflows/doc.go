// Package workflows is adaptflow's process interpreter: one deterministic
// Temporal workflow, [Run], that walks a process definition's plan.
//
// # What it does
//
// For each planned step it first asks for a decision (the Decide local
// activity), then applies the recorded actions in a fixed order:
//
//  1. set route variables;
//  2. open each review and wait for its verdict (a Temporal Update,
//     [UpdateReviewDecision]); a rejection ends the instance as rejected;
//  3. insert catalog steps added after the step;
//  4. skip the step if a policy skipped it;
//  5. insert catalog steps added before the step; they run first, and the
//     step runs after them without a second decision.
//
// Then it runs the step (task, http and validate steps as activities, wait
// steps as durable timers, review steps as the same gate as review actions,
// process steps as a child workflow of this one, for an instance of the
// other process the StartSubProcess activity stored) and keeps its result
// for later facts and templates. With an SLA and a callback that wants
// "overdue", a timer in a coroutine of its own reports the instance
// running past the SLA. An instance that ends without completing runs the
// compensations of the steps it finished (compensate), latest first. The state of the
// instance is answered by the query [QueryState], and with the number of
// its latest save to the store by [QuerySaved] (the API's sweep brings a
// store restored from an older backup up to it).
//
// # Rules for this package
//
//   - No I/O, clocks, randomness, goroutines, select or map iteration:
//     workflow.Now, workflow.Sleep and workflow.Await only.
//   - Everything that touches the world is an activity in package activities,
//     referred to through a typed nil *activities.Activities.
//   - A change that alters the commands a history produces goes behind
//     workflow.GetVersion, with a replay test of a history recorded before
//     the change (testdata/).
package workflows
