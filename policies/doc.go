// Package policies compiles and evaluates adaptation policies.
//
// # The language
//
// A policy's `when` is a CEL expression over the facts of one decision
// point. The variables are declared once in [Env]; an expression that names
// anything else is refused when the policy is saved, with the position of the
// mistake. The facts are:
//
//	input           the instance's input (a map)
//	process         {name, version}
//	instance        {id, business_key, step, steps_done, elapsed (seconds), vars, sla (seconds, 0: none), overdue}
//	steps           results of the steps run so far, by step id
//	signals         name -> {value, score, anomalous, warming_up, recurring, baseline, reason}
//	classification  {label, confidence, fields, model}
//	calendar        {now (RFC 3339), month, day, weekday, hour, season}
//	reviews         the reviews of this instance so far
//
// Facts are plain JSON values: numbers are doubles, and CEL compares a double
// with an int literal by value (`input.amount > 100` works).
//
// # Evaluation
//
// A decision record holds the value of every sub-expression that read a
// fact, compared one, called a function or looped over a list on the way to
// the result: the values that decided it. A branch that `&&` or `||` cut
// short has no value, as it had no say. The nodes worth showing are picked
// at compile time and wrapped by a decorator that writes each value to its
// slot in a per-evaluation array (cel-go's own state tracking keeps a map
// of every node per evaluation, which cost most of a decision's time). A
// missing fact is an evaluation error, recorded as such; the policy's
// on_error says whether it then matches (`match`) or not (`skip`, the
// default).
//
// Every evaluation is bounded in cost. An expression whose estimated cost,
// with every list, map and string in the facts assumed to hold up to
// MaxCollectionSize items, is over CostLimit is refused at compile time.
// Facts within those sizes are then evaluated without run-time cost
// tracking (the estimate bounds them); facts with larger collections run
// under the run-time limit. A cancelled context stops a decision between
// policies.
//
// # Decision points and guardrails
//
// Before each step the workflow asks for a decision. Only policies with an
// action for that step (or with a step-less review or set) are evaluated.
// Proposed actions are resolved in a fixed order — priority, higher first,
// then policy id — and checked against guardrails that no policy can
// bypass: a mandatory step is never skipped, only catalog steps can be added,
// each catalog step is added at most once, and added steps and reviews per
// instance are capped by the definition's limits. A refused action is
// recorded with its reason.
package policies
