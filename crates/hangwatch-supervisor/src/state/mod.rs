//! The supervisor's state directory: logs, the event log, the instance record and its lock.
