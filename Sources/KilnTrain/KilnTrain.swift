// KilnTrain
