"""Engine-neutral steps: each turns a batch of events into a batch of events plus dead letters."""
