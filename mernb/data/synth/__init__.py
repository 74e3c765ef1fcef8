"""SynthME: synthetic micro-expression clips in the real releases' layouts."""
