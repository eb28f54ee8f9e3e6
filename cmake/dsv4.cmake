# Helpers shared by every dsv4 target.

# Warnings are errors in our code (not in third-party headers, which come in as SYSTEM).
set(DSV4_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wcast-align
    -Wimplicit-fallthrough -Werror)

function(dsv4_warnings target)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${DSV4_WARNINGS}>)
endfunction()

# dsv4_add_library(name sources...): a static library whose public headers live in include/.
function(dsv4_add_library name)
  add_library(${name} STATIC ${ARGN})
  target_include_directories(${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include)
  dsv4_warnings(${name})
endfunction()

# dsv4_add_tool(name sources... LIBS libs...)
function(dsv4_add_tool name)
  cmake_parse_arguments(T "" "" "LIBS" ${ARGN})
  add_executable(${name} ${T_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE ${T_LIBS})
  dsv4_warnings(${name})
endfunction()
