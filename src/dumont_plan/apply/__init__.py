"""apply_plan: carry a Plan out against the API. The only package that mutates anything.

The commands call workflow.py (apply_stack, destroy_stack, refresh_state, import_resource):
lock, observe, plan, confirm, then apply_plan below (`from dumont_plan.apply.engine import
apply_plan`). `dumont plan` calls plan_flow.py (plan_stack), which imports none of the modules
that change anything: this package's __init__ imports nothing, so reading the live state never
loads the engine.

    result = apply_plan(plan, stack, client, ledger, parallelism=8, on_event=print)
    result.done / result.failed / result.skipped      (by address)
    result.exit_code                                  0, 3, 4 or 5 (DESIGN §3)

Changes run in dependency order, up to `parallelism` at once (`scheduler.run_dag`); a failure
skips its dependents, transitively, while independent changes complete. No-ops are not run.

Every mutation is journaled in the ledger first, so a crash at any point converges on the next
apply (the plan adopts an object found by its remote name instead of creating a duplicate):

    create, run   begin_op -> ops.create(body, Idempotency-Key) -> finish_op(id, record)
    replace       begin_op -> ops.delete(old) -> ops.create(new) -> finish_op
                  (delete first: a job's old run is cancelled, which `--allow-restart` allowed
                  at plan time; an instance is a scarce, hourly-billed machine and two of them
                  under one address would be a duplicate if apply died between the steps.
                  The price: if the new race finds no machine, the address has none until the
                  next apply)
    update, pause, resume
                  begin_op -> ops.update(values, changed fields) -> finish_op(record)
    delete        begin_op -> ops.delete (a job: cancel if active; an instance: DELETE)
                  -> ledger.remove
    adopt         ledger.record (no API call); after an interrupted create it also finishes
                  that create: leftovers of a killed race deleted, the wait done (recover.py)
    forget        ledger.remove (no API call)

The Idempotency-Key of a create is the one journaled by an interrupted create of the same
address when there is one, so a create retried after a crash is replayed, not repeated.
`${kind.name.attr}` references are filled in just before each request from what this apply
created (or the ledger and live objects for resources it did not touch); `${secret.NAME}` is read
then, handed to the request, and never stored: the ledger gets the salted-hash record of
`plan.fingerprint.desired_record`, and every event text goes through a `Redactor`.

Waits (after create, run, replace and resume): the resource's `wait:` or the `wait` argument
(`--wait`), `none | running | completed` (an instance has no `completed`: it means running).
A wait ends at the target, or at a terminal failure (-> exit 5), or after `wait_timeout`
seconds (-> exit 4); the change then counts as failed, so its dependents are skipped.

Modules: workflow.py and plan_flow.py (the library calls), engine.py (apply_plan, the
per-action steps), recover.py (adoption and interrupted creates), waits.py (read-only polling
and log streaming), resolve.py (references and secrets filled into a request body),
observe.py (the live objects and offers a plan reads), base.py (ApplyResult, crash hook).
The API calls per kind are the kinds' ops (`kinds.ops`).

Test hook: with DUMONT_TEST_CRASH_AFTER=N in the environment the process dies (os._exit(137),
as SIGKILL would) right after its Nth ledger write, to prove the journal by real crashes.
"""
