"""What every revisit service does the same way: settings, events, the consume loop,
the payload store, metrics and health."""
