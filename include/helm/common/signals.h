// Process-level handling of SIGTERM and SIGINT for main(): BlockTerminationSignals() first thing in
// main (before any thread starts, so every thread inherits the mask), then WaitForTerminationSignal
// where the process should wait to be told to stop.
#pragma once

namespace helm {

void BlockTerminationSignals();
// Blocks until SIGTERM or SIGINT arrives; returns the signal number.
int WaitForTerminationSignal();

}  // namespace helm
