"""Pure decision rules: facts in, Verdict (or plain facts) out; no I/O, no clock, no logging."""
