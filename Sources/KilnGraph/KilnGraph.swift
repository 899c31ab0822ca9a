// KilnGraph
