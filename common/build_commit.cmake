# cmake -DSOURCE_DIR=<tree> -DOUTPUT=<file.cc> -P build_commit.cmake
#
# Writes OUTPUT defining vitrine::kBuildCommit, the `git describe --always
# --dirty` of SOURCE_DIR, or "" outside a git checkout (a source tarball,
# the container build, which leaves .git out). Run at every build, not at
# configure time, so the commit is never that of an older configure; the
# file is rewritten only when it changes, so an unchanged commit rebuilds
# nothing.
cmake_minimum_required(VERSION 3.25)  # the policies of the project, CMP0053 among them
set(commit "")
find_package(Git QUIET)
if(GIT_FOUND)
  execute_process(
    COMMAND ${GIT_EXECUTABLE} -C ${SOURCE_DIR} describe --always --dirty --abbrev=12
    OUTPUT_VARIABLE commit
    OUTPUT_STRIP_TRAILING_WHITESPACE
    ERROR_QUIET
    RESULT_VARIABLE failed)
  if(failed)
    set(commit "")
  endif()
endif()
file(CONFIGURE OUTPUT ${OUTPUT}
  CONTENT "// Written by common/build_commit.cmake at build time: do not edit.\nnamespace vitrine {\nextern const char kBuildCommit[] = \"@commit@\";\n}  // namespace vitrine\n"
  @ONLY)
