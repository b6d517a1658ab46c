"""The git source and the watchers: where the desired state comes from and when to look again.

    from controller.source.git import GitSource            # clone/fetch, revisions, export, verify
    from controller.source.watch import SourceTrigger, FileWatcher   # poller + push watcher; CIB watcher

models (pydantic, the boundary), decisions (pure: backoff, "does this concern us", signature verdicts),
signatures (the keyring and allowed-signers file the agent controls), git (the effects), watch (threads).
"""
