"""What we correct or watch in faust-streaming 0.15.x: a cheaper hand-off to the agent
(:mod:`.fastpath`), table recovery that never drops records (:mod:`.recovery`),
watchdogs for skipped records and stalled commits (:mod:`.watchdogs`), and no built-in
web pages (:mod:`.webpages`)."""
