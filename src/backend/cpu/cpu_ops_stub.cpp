// placeholder until the CPU backend lands (removed by it)
