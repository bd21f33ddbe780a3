"""Any labelled audio folder described by a CSV manifest."""
