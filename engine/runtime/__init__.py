"""Running containers: runtime-spec generation, snapshots and overlay mounts, the runc driver, the
per-container monitor, records, logs, health checks and the async ``ContainerService``.

Public surface (imported from the modules, nothing is imported here so start-up stays lean)::

    engine.runtime.service.ContainerService   engine.containers: run/create/start/stop/kill/restart/
                                              remove/list/get/inspect/logs/exec/stats/port/wait/events
    engine.runtime.options.RunOptions         docker's run options (+ parse_volume, parse_memory, ...)
    engine.runtime.spec.build_spec            image config + RunOptions + SpecContext -> config.json
    engine.runtime.snapshots                  chain_ids, SnapshotStore.ensure, prepare_rootfs, release_rootfs
    engine.runtime.userdb                     resolve --user from the image's /etc/passwd, /etc/group (data)
"""
