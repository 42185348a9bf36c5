"""TensorBoard: the run's summary writer, the HParams dashboard and chart layout, reading event
files back, a local server for tests and screenshots.
"""
