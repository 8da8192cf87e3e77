/* The seeded-bug catalogue.
 *
 * Each entry is a historical bug of hakmem's ancestor, planted in the code path
 * it belongs to and compiled in only when its build asks for it
 * (`python -m harness.build VARIANT --inject NAME` passes -DHAK_INJECT_<NAME>=1).
 * A clean build has every entry at 0, so the planted branch is dead code that
 * the compiler removes. Each entry says what it breaks and what should see it.
 */
#ifndef HAKMEM_INJECT_H
#define HAKMEM_INJECT_H

#ifndef HAK_INJECT_NAME
#define HAK_INJECT_NAME ""
#endif

#endif
