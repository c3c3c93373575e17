from __future__ import annotations


def in_processes(target, arguments) -> list[int | None]:
    """Run ``target(*args)`` for each args at once, each in a fresh interpreter like Airflow's task
    processes; returns their exit codes."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=target, args=args) for args in arguments]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    return [w.exitcode for w in workers]
