#include <cstdio>
int main() { std::puts("vitrine"); return 0; }
