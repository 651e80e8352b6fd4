"""Dataset conversion to TFRecords and checks of the result."""
