# Writes OUT: a C++ source defining `const char* const SYMBOL` holding the text of INPUT.
# Invoked as: cmake -DINPUT=... -DOUT=... -DSYMBOL=... -DNAMESPACE=... -P embed.cmake
file(READ "${INPUT}" content)
file(WRITE "${OUT}.tmp"
     "// Generated from ${INPUT}; do not edit.\nnamespace ${NAMESPACE} {\n"
     "extern const char* const ${SYMBOL};\n"
     "const char* const ${SYMBOL} = R\"helm_embedded(${content})helm_embedded\";\n}\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
