"""HTCondor and local executors behind one interface (``scheduler.base.Scheduler``)."""
