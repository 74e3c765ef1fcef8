"""Motion representations: Eulerian motion magnification and approximate rank pooling."""
