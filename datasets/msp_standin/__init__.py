"""msp_standin: a SYNTHETIC (not speech) MSP-Podcast-shaped IS10 corpus for scaling benchmarks."""
