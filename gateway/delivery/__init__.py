"""Delivery: everything that happens to an alert after it is raised (outputs, outboxes, history)."""
